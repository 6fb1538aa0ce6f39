"""The agent's config file: a bad one is one clear error line and exit code 2."""

import pytest
import tomli_w
from click.testing import CliRunner
from island_cli.agent import config as agent_config
from island_cli.agent import state
from island_cli.agent.command import agent_command


def run_agent(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return CliRunner().invoke(agent_command, ["--config", str(path)])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[host\nname = 1", "invalid TOML"),
        ('[agent]\nruntime = "docker"', "[agent] runtime must be one of mock, wasm, llmcpp"),
        ("[agent]\nheartbeat_intervall = 1", "unknown key in [agent]: heartbeat_intervall"),
        ("[agent]\nmax_concurrent_jobs = 0", "[agent] max_concurrent_jobs must be at least 1"),
        (
            '[agent]\nmock_tokens_per_second = "fast"',
            "[agent] mock_tokens_per_second must be a number",
        ),
        ('[pricing]\ndefault_price = "cheap"', "[pricing] default_price must be a price"),
        (
            '[pricing]\nworkloads = {llm-chat = "-1"}',
            "[pricing] workloads.llm-chat must be a price of 0 or more",
        ),
        ('host_id = "not-a-uuid"', "host_id must be a UUID"),
        ("[coordinator]\nnats_url = 4222", "[coordinator] nats_url must be a non-empty string"),
        ('[agent]\nruntime = "llmcpp"', "[agent] model_path (a local GGUF file) is required"),
        (
            '[agent]\nruntime = "wasm"\nsupported_runtimes = ["wasm", "container"]',
            "runtime wasm cannot serve 'container' jobs",
        ),
    ],
)
def test_a_bad_config_exits_with_code_2_and_one_clear_error_line(tmp_path, text, message):
    result = run_agent(tmp_path, text + _state_dir(tmp_path, text))

    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    assert message in lines[0]


def _state_dir(tmp_path, text: str) -> str:
    """Keeps state out of the home directory when the config gets that far."""
    return "" if "[agent]" in text else f'\n[agent]\nstate_dir = "{tmp_path / "state"}"\n'


def test_a_missing_config_file_named_on_the_command_line_is_an_error(tmp_path):
    result = CliRunner().invoke(agent_command, ["--config", str(tmp_path / "nope.toml")])

    assert result.exit_code == 2
    assert "config file not found" in result.output


def test_llmcpp_with_a_missing_gguf_file_or_package_exits_with_code_2(tmp_path):
    text = tomli_w.dumps(
        {
            "agent": {
                "runtime": "llmcpp",
                "model_path": str(tmp_path / "missing.gguf"),
                "state_dir": str(tmp_path),
            }
        }
    )

    result = run_agent(tmp_path, text)

    assert result.exit_code == 2
    assert "llama-cpp-python" in result.output or "GGUF file not found" in result.output


def test_a_good_config_is_read_with_its_prices_and_intervals(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        tomli_w.dumps(
            {
                "api_key": "ak_belongs_to_the_cli",
                "host_id": "0b1c2d3e-0000-4000-8000-000000000009",
                "host": {"name": "box", "region": "us-east"},
                "coordinator": {
                    "nats_url": "nats://example.invalid:4222",
                    "api_url": "http://portal.test",
                },
                "pricing": {"default_price": "0.01", "workloads": {"llm-chat": "0.02"}},
                "agent": {
                    "runtime": "wasm",
                    "heartbeat_interval": 2,
                    "max_concurrent_jobs": 3,
                    "time_limits": {"wasm": 5},
                },
            }
        )
    )

    config = agent_config.load(path)

    assert config.host_id == "0b1c2d3e-0000-4000-8000-000000000009"
    assert config.asking_prices == {"llm-chat": "0.02", "_default": "0.01"}
    assert config.supported_runtimes == ["wasm"]
    assert config.heartbeat_interval == 2.0
    assert config.max_concurrent_jobs == 3
    assert config.time_limit("wasm") == 5.0
    assert config.time_limit("container") == 300.0


def test_the_state_file_keeps_the_generated_host_id(tmp_path):
    first = state.load(tmp_path)
    second = state.load(tmp_path)

    assert first.host_id == second.host_id
    assert first.paired is False


def test_an_agent_serves_onnx_cargos_by_default_only_when_its_extra_is_installed(monkeypatch):
    from island_cli.agent.runtimes import onnx

    monkeypatch.setattr(onnx, "available", lambda: True)
    assert agent_config.parse({}, path=None).supported_runtimes == [
        "container", "llmcpp", "wasm", "onnx"
    ]  # fmt: skip
    assert agent_config.parse({"agent": {"runtime": "wasm"}}, path=None).supported_runtimes == [
        "wasm"
    ]

    monkeypatch.setattr(onnx, "available", lambda: False)
    assert agent_config.parse({}, path=None).supported_runtimes == ["container", "llmcpp", "wasm"]


def test_a_clusters_urls_are_split_and_each_password_hidden_in_messages():
    from island_cli.agent.connection import redact, servers

    url = "nats://island:pw@a:4222, nats://island:pw@b:4222"

    assert servers(url) == ["nats://island:pw@a:4222", "nats://island:pw@b:4222"]
    assert redact(url) == "nats://island:***@a:4222,nats://island:***@b:4222"
