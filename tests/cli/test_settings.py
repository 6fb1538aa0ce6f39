"""Where settings come from (flag > environment > file > default) and the exit codes."""

import json

from django.conf import settings
from island_cli.api import EXIT_AUTH, EXIT_NETWORK, EXIT_RATE_LIMIT, EXIT_USAGE
from island_cli.config import DEFAULT_API_URL, DEFAULT_NATS_URL, save_config
from island_cli.options import State

BAD_KEY = "ak_" + "0" * 40


def status(run, *args, env=None):
    result = run("--format", "json", *args, "auth", "status", env=env)
    return result.exit_code, json.loads(result.stdout) if result.exit_code == 0 else result.stderr


def test_the_config_file_is_used_when_nothing_else_is_set(run, live, key, config_file):
    save_config(config_file, {"api_key": key, "api_url": live.url})

    code, data = status(run)

    assert code == 0, data
    assert data["key_source"] == "config file"


def test_the_environment_beats_the_config_file(run, live, key, config_file, closed_port):
    save_config(config_file, {"api_key": BAD_KEY, "api_url": f"http://127.0.0.1:{closed_port}"})

    code, data = status(run, env={"ARCHIPELAG_API_KEY": key, "ARCHIPELAG_API_URL": live.url})

    assert code == 0, data
    assert data["key_source"] == "environment"
    assert data["api_url"] == live.url


def test_a_flag_beats_the_environment(run, live, key, closed_port):
    env = {"ARCHIPELAG_API_KEY": BAD_KEY, "ARCHIPELAG_API_URL": f"http://127.0.0.1:{closed_port}"}

    code, data = status(run, "--api-key", key, "--api-url", live.url, env=env)

    assert code == 0, data
    assert data["key_source"] == "flag"


def test_a_flag_after_the_command_beats_one_before_it(run, live, key):
    result = run("--api-key", BAD_KEY, "--api-url", live.url, "account", "--api-key", key)

    assert result.exit_code == 0, result.output


def test_an_api_url_ending_in_api_v1_works_too(run, live, key):
    result = run("--api-url", f"{live.url}/api/v1/", "--api-key", key, "account")

    assert result.exit_code == 0, result.output


def test_defaults_apply_and_the_nats_url_follows_the_same_order(home, monkeypatch, config_file):
    monkeypatch.setenv("HOME", str(home))
    for name in ("ARCHIPELAG_API_URL", "ARCHIPELAG_NATS_URL", "ISLAND_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    assert (State().api_url, State().nats_url) == (DEFAULT_API_URL, DEFAULT_NATS_URL)

    save_config(config_file, {"coordinator": {"nats_url": "nats://agent:4222"}})
    assert State().nats_url == "nats://agent:4222"
    save_config(config_file, {"nats_url": "nats://file:4222"})
    assert State().nats_url == "nats://file:4222"
    monkeypatch.setenv("ARCHIPELAG_NATS_URL", "nats://env:4222")
    assert State().nats_url == "nats://env:4222"
    assert State(flags={"nats_url": "nats://flag:4222"}).nats_url == "nats://flag:4222"


def test_island_config_points_at_another_file(run, live, key, tmp_path):
    elsewhere = tmp_path / "other.toml"
    save_config(elsewhere, {"api_key": key, "api_url": live.url})

    assert run("account", env={"ISLAND_CONFIG": str(elsewhere)}).exit_code == 0
    assert run("--config", str(elsewhere), "account").exit_code == 0
    assert run("account").exit_code == EXIT_AUTH


def test_an_unreachable_server_exits_6_with_one_line(run, closed_port):
    result = run("--api-url", f"http://127.0.0.1:{closed_port}", "--api-key", BAD_KEY, "account")

    assert result.exit_code == EXIT_NETWORK
    assert result.stdout == ""
    assert result.stderr.startswith("Error: Cannot reach")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unreachable_nats_server_exits_6(run, closed_port):
    result = run(
        "sail", "subscribe", "host.*.heartbeat", "--nats-url", f"nats://127.0.0.1:{closed_port}"
    )

    assert result.exit_code == EXIT_NETWORK
    assert "Cannot reach NATS" in result.stderr


def test_the_rate_limit_exits_5_and_says_when_to_retry(run, live, key):
    with live.client(key) as client:
        for _ in range(settings.API_RATE_LIMIT):
            assert client.get("/account").status_code == 200

    result = run("--api-url", live.url, "--api-key", key, "account")

    assert result.exit_code == EXIT_RATE_LIMIT
    assert "retry in" in result.stderr


def test_usage_errors_exit_2(run):
    assert run("no-such-command").exit_code == EXIT_USAGE
    assert run("--format", "yaml", "account").exit_code == EXIT_USAGE
    assert run("api-keys", "create").exit_code == EXIT_USAGE
    assert run("--api-url", "ftp://example.com", "--api-key", BAD_KEY, "account").exit_code == 2


def test_version_and_help_document_the_exit_codes(run):
    assert run("--version").stdout.strip() == "island 0.1.0"
    help_text = run("--help").stdout
    for line in ("3  authentication", "4  not found", "5  rate limited", "6  network"):
        assert line in help_text


def test_completion_prints_a_script_for_each_shell(run):
    for shell, marker in [
        ("bash", "complete -o"),
        ("zsh", "compdef"),
        ("fish", "complete --no-files --command island"),
    ]:
        result = run("completion", shell)
        assert result.exit_code == 0
        assert marker in result.stdout
        assert "_ISLAND_COMPLETE" in result.stdout
    assert run("completion", "tcsh").exit_code == EXIT_USAGE
