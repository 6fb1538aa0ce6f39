"""island completion bash|zsh|fish"""

import click
from click.shell_completion import get_completion_class


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    bash: island completion bash >> ~/.bashrc
    zsh:  island completion zsh >> ~/.zshrc
    fish: island completion fish > ~/.config/fish/completions/island.fish
    """
    root = ctx.find_root()
    complete_class = get_completion_class(shell)
    if complete_class is None:  # pragma: no cover - the Choice lists only supported shells
        raise click.UsageError(f"Unsupported shell {shell}")
    # Named after the installed binary, whatever name this process was started under.
    click.echo(complete_class(root.command, {}, "island", "_ISLAND_COMPLETE").source())
