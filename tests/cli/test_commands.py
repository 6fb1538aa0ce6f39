"""The command tree: the optional agent command and the output helpers."""

from island_cli import main
from island_cli.api import EXIT_USAGE
from island_cli.output import block, table


def test_the_agent_command_is_listed_when_its_module_imports(run):
    assert "agent" in run("--help").stdout.split()
    assert run("agent", "--help").exit_code == 0


def test_the_agent_command_is_absent_when_its_module_cannot_be_imported(run, monkeypatch):
    monkeypatch.setattr(main, "AGENT_MODULE", "island_cli.no_such_agent.command")

    assert "agent" not in run("--help").stdout.split()
    assert run("agent").exit_code == EXIT_USAGE


def test_tables_align_every_column_under_its_header():
    rows = [{"slug": "llm-chat", "name": "LLM Chat"}, {"slug": "sdxl", "name": None}]

    text = table(rows, [("SLUG", lambda r: r["slug"]), ("NAME", lambda r: r["name"])])

    assert text.splitlines() == ["SLUG      NAME", "llm-chat  LLM Chat", "sdxl      -"]


def test_blocks_align_the_values():
    text = block("Account", [("Email", "a@b.c"), ("Credits", "1.00")])

    assert text == "Account\n  Email:   a@b.c\n  Credits: 1.00"
