import json
import stat
import tomllib

from island_cli.api import EXIT_AUTH

from portal.models import ApiKey


def read(path):
    return tomllib.loads(path.read_text())


def test_login_with_key_checks_it_and_saves_it_readable_only_by_the_owner(
    run, live, key, config_file
):
    result = run("--api-url", live.url, "auth", "login", "--key", key)

    assert result.exit_code == 0, result.output
    assert "Logged in as ada@example.com" in result.stdout
    assert read(config_file) == {"api_key": key, "api_url": live.url}
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600


def test_login_prompts_for_the_key_without_echoing_it(run, live, key, config_file):
    result = run("auth", "login", "--api-url", live.url, input=f"{key}\n")

    assert result.exit_code == 0, result.output
    assert "API key" in result.output
    assert key not in result.output
    assert read(config_file)["api_key"] == key


def test_login_keeps_the_agents_tables_in_the_config_file(run, live, key, config_file):
    config_file.parent.mkdir()
    config_file.write_text(
        'host_id = "h1"\n[host]\nname = "gpu-beast"\n[pricing]\ndefault = "0.5"\n'
    )

    result = run("--api-url", live.url, "auth", "login", "--key", key)

    assert result.exit_code == 0, result.output
    saved = read(config_file)
    assert saved["host"] == {"name": "gpu-beast"}
    assert saved["pricing"] == {"default": "0.5"}
    assert saved["host_id"] == "h1"
    assert saved["api_key"] == key


def test_login_with_a_wrong_key_exits_3_and_saves_nothing(run, live, config_file):
    result = run("--api-url", live.url, "auth", "login", "--key", "ak_" + "x" * 40)

    assert result.exit_code == EXIT_AUTH
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not config_file.exists()


def test_status_shows_the_email_and_credit_balance(run, live, key):
    run("--api-url", live.url, "auth", "login", "--key", key)

    result = run("auth", "status")

    assert result.exit_code == 0, result.output
    assert "Logged in as ada@example.com" in result.stdout
    assert "Credits:" in result.stdout
    assert "10000.00" in result.stdout


def test_status_without_a_key_exits_3_and_says_how_to_log_in(run):
    result = run("auth", "status")

    assert result.exit_code == EXIT_AUTH
    assert "island auth login" in result.stderr


def test_status_after_the_key_is_revoked_exits_3(run, live, key):
    run("--api-url", live.url, "auth", "login", "--key", key)
    assert run("api-keys", "delete", str(ApiKey.objects.get().pk)).exit_code == 0

    result = run("auth", "status")

    assert result.exit_code == EXIT_AUTH


def test_logout_removes_the_key_but_keeps_the_other_settings(run, live, key, config_file):
    run("--api-url", live.url, "auth", "login", "--key", key)
    config_file.write_text(config_file.read_text() + '[host]\nname = "gpu-beast"\n')

    result = run("auth", "logout")

    assert result.exit_code == 0, result.output
    assert "Logged out" in result.stdout
    assert read(config_file) == {"api_url": live.url, "host": {"name": "gpu-beast"}}
    assert run("auth", "status").exit_code == EXIT_AUTH


def test_logout_when_not_logged_in_succeeds_and_says_so(run, config_file):
    result = run("auth", "logout", "--format", "json")

    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"logged_out": False}
    assert not config_file.exists()
