"""The settings refuse to start a production process without a real secret, or without
a choice of where the sign-in links go."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


def load_settings(show: str = "DEBUG", **env: str) -> subprocess.CompletedProcess:
    unset = ("DEBUG", "SECRET_KEY", "EMAIL_URL", "EMAIL_BACKEND")
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-c", f"from config import settings; print(settings.{show})"],
        env={**clean, **env}, cwd=BASE_DIR, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    "env", [{"DEBUG": "false"}, {"DEBUG": "false", "SECRET_KEY": "dev-insecure-secret-key"}]
)
def test_debug_off_without_a_real_secret_key_is_refused_clearly(env):
    loaded = load_settings(**env)
    assert loaded.returncode != 0
    assert "SECRET_KEY must be set to a real secret when DEBUG is off" in loaded.stderr


SECRET = "s" * 50
CONSOLE = "django.core.mail.backends.console.EmailBackend"


def test_debug_off_with_a_secret_key_and_an_email_server_loads():
    loaded = load_settings(
        "EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS",
        DEBUG="false",
        SECRET_KEY=SECRET,
        EMAIL_URL="smtp://mailer:pw@mail.example.com:587/?tls=True",
    )
    assert loaded.stdout.split() == [
        "django.core.mail.backends.smtp.EmailBackend",
        "mail.example.com",
        "587",
        "True",
    ]


def test_debug_off_without_email_configuration_is_refused_clearly():
    loaded = load_settings(DEBUG="false", SECRET_KEY=SECRET)
    assert loaded.returncode != 0
    assert "Email is not configured: set EMAIL_URL" in loaded.stderr
    assert f"EMAIL_BACKEND={CONSOLE}" in loaded.stderr


def test_the_console_backend_with_debug_off_is_a_choice_made_on_purpose():
    loaded = load_settings("EMAIL_BACKEND", DEBUG="false", SECRET_KEY=SECRET, EMAIL_BACKEND=CONSOLE)
    assert loaded.stdout.strip() == CONSOLE


def test_debug_on_prints_emails_by_default():
    assert load_settings("EMAIL_BACKEND", DEBUG="true").stdout.strip() == CONSOLE


def test_make_run_prints_emails_on_the_console_on_purpose(monkeypatch, tmp_path):
    from config import stack

    monkeypatch.delenv("EMAIL_URL", raising=False)
    monkeypatch.setenv("EMAIL_BACKEND", "")
    assert stack.base_env(tmp_path, try_local=True)["EMAIL_BACKEND"] == CONSOLE
    monkeypatch.setenv("EMAIL_URL", "smtp://mail.example.com:25")
    monkeypatch.delenv("EMAIL_BACKEND")
    assert "EMAIL_BACKEND" not in stack.base_env(tmp_path, try_local=True)
