"""The settings refuse to start a production process without a real secret."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


def load_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY")}
    return subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        env={**clean, **env}, cwd=BASE_DIR, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    "env", [{"DEBUG": "false"}, {"DEBUG": "false", "SECRET_KEY": "dev-insecure-secret-key"}]
)
def test_debug_off_without_a_real_secret_key_is_refused_clearly(env):
    loaded = load_settings(**env)
    assert loaded.returncode != 0
    assert "SECRET_KEY must be set to a real secret when DEBUG is off" in loaded.stderr


def test_debug_off_with_a_secret_key_loads():
    assert load_settings(DEBUG="false", SECRET_KEY="s" * 50).returncode == 0
