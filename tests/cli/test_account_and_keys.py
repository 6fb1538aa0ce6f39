import json

from django.utils import timezone
from island_cli.api import EXIT_ERROR, EXIT_NOT_FOUND

from portal import services
from portal.models import ApiKey, ApiKeyDay, User


def test_account_prints_the_seed_pages_block(run, live, key):
    user = User.objects.get()

    result = run("--api-url", live.url, "--api-key", key, "account")

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Account\n  Email:   ada@example.com\n  ID:      {user.pk}\n  Credits: 10000.00\n"
        "  Held:    0.00\n  Earned:  0.00\n"
    )


def test_account_as_json_is_valid_json_and_nothing_else(run, live, key):
    result = run("account", "--format", "json", "--api-url", live.url, "--api-key", key)

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["email"] == "ada@example.com"
    assert data["credits"] == 10000


def test_api_keys_list_shows_an_aligned_table_of_prefixes(run, live, key):
    result = run("--api-url", live.url, "--api-key", key, "api-keys", "list")

    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == [
        "ID", "NAME", "PREFIX", "SCOPES", "LIMITS", "TODAY", "CREATED", "LAST", "USED",
    ]  # fmt: skip
    assert row.index("laptop") == header.index("NAME")
    assert row.index(key[:8]) == header.index("PREFIX")
    assert key not in result.stdout


def test_api_keys_create_prints_the_key_once_with_the_warning(run, live, key):
    result = run("--api-url", live.url, "--api-key", key, "api-keys", "create", "ci-pipeline")

    assert result.exit_code == 0, result.output
    created = ApiKey.objects.get(name="ci-pipeline")
    full_key = next(w for w in result.stdout.split() if w.startswith(created.prefix))
    assert len(full_key) > 32
    assert "only shown once" in result.stdout
    assert run("--api-url", live.url, "--api-key", full_key, "account").exit_code == 0
    listing = run("--api-url", live.url, "--api-key", key, "api-keys", "list")
    assert listing.exit_code == 0
    assert full_key not in listing.stdout


def test_api_keys_create_as_json_includes_the_key(run, live, key):
    args = ("--api-url", live.url, "--api-key", key, "--format", "json")

    result = run(*args, "api-keys", "create", "ci")

    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["name"] == "ci"
    assert created["key"].startswith("ak_")
    assert "only shown once" in result.stderr


def test_api_keys_delete_revokes_the_key(run, live, key):
    other = run(
        "--api-url", live.url, "--api-key", key, "--format", "json", "api-keys", "create", "old"
    )
    created = json.loads(other.stdout)

    result = run("--api-url", live.url, "--api-key", key, "api-keys", "delete", created["id"])

    assert result.exit_code == 0, result.output
    assert f"Revoked API key {created['id']}" in result.stdout
    assert ApiKey.objects.get(pk=created["id"]).revoked_at is not None
    assert run("--api-url", live.url, "--api-key", created["key"], "account").exit_code == 3


def test_api_keys_list_as_json_is_a_list(run, live, key):
    result = run("--api-url", live.url, "--api-key", key, "--format", "json", "api-keys", "list")

    assert result.exit_code == 0, result.output
    assert [k["name"] for k in json.loads(result.stdout)] == ["laptop"]


def test_deleting_an_unknown_key_exits_4(run, live, key):
    unknown = "00000000-0000-0000-0000-000000000000"

    result = run("--api-url", live.url, "--api-key", key, "api-keys", "delete", unknown)

    assert result.exit_code == EXIT_NOT_FOUND
    assert result.stdout == ""
    assert "not_found" in result.stderr


def test_an_invalid_name_is_an_api_error_with_exit_1_and_the_servers_message(run, live, key):
    result = run("--api-url", live.url, "--api-key", key, "api-keys", "create", "x" * 101)

    assert result.exit_code == EXIT_ERROR
    assert result.stderr.startswith("Error: name:")
    assert "validation_error" in result.stderr


def test_api_keys_create_with_limits_and_list_shows_them(run, live, key):
    args = ("--api-url", live.url, "--api-key", key)
    created = run(*args, "api-keys", "create", "ci", "--scope", "read", "--scope", "write",
                  "--cap-day", "5", "--jobs-per-minute", "2", "--cargo", "llm-chat")  # fmt: skip
    assert created.exit_code == 0, created.output
    listing = run(*args, "api-keys", "list").stdout
    [row] = [line for line in listing.splitlines() if " ci " in line]
    assert "5/day 2 jobs/min llm-chat" in row
    assert "0 jobs, 0.00 cr" in row


def test_api_keys_update_changes_and_clears_limits(run, live, key):
    args = ("--api-url", live.url, "--api-key", key, "--format", "json")
    made = json.loads(run(*args, "api-keys", "create", "ci", "--cap-month", "9").stdout)
    result = run(
        *args, "api-keys", "update", made["id"], "--cap-month", "none", "--ip", "10.0.0.0/8"
    )
    assert result.exit_code == 0, result.output
    updated = json.loads(result.stdout)
    assert (updated["spend_cap_month"], updated["allowed_ips"]) == (None, ["10.0.0.0/8"])


def test_api_keys_update_beyond_the_own_key_is_refused(run, live, key):
    ApiKey.objects.filter(prefix=key[:8]).update(spend_cap_day=1)
    args = ("--api-url", live.url, "--api-key", key)
    result = run(*args, "api-keys", "create", "big", "--cap-day", "2")
    assert result.exit_code != 0
    assert "beyond_own_limits" in result.stderr


def test_api_keys_usage_shows_a_day_a_line_and_the_total(run, live, key):
    own = ApiKey.objects.get(prefix=key[:8])
    ApiKeyDay.objects.create(key=own, day=timezone.now().date(), jobs=3, tokens=40, requests=9)
    args = ("--api-url", live.url, "--api-key", key)
    result = run(*args, "api-keys", "usage", str(own.pk), "--window", "7d")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["DAY", "REQUESTS", "JOBS", "TOKENS", "CREDITS"]
    assert len(lines) == 1 + 7 + 1
    assert lines[-2].split()[1:4] == ["9", "3", "40"]
    assert lines[-1].split()[:4] == ["TOTAL", "9", "3", "40"]


def test_api_keys_with_a_key_without_the_keys_scope_says_which_scope(run, live):
    user = services.sign_up(email="bo@example.com", password="correct horse battery")
    plain = services.create_api_key(user=user, name="plain")[1]
    result = run("--api-url", live.url, "--api-key", plain, "api-keys", "list")
    assert result.exit_code != 0
    assert "'keys' scope" in result.stderr
