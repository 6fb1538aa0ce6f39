"""``python -m island_cli.agent`` runs the same command as ``island agent``."""

from .command import agent_command

agent_command(prog_name="island agent")
