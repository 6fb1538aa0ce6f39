"""island account"""

import click

from island_cli.options import State, global_options, pass_state
from island_cli.output import block, emit, number


@click.command()
@global_options
@pass_state
def account(state: State) -> None:
    """Show your account: available credits, credits held for running jobs, earnings."""
    data = state.api().get("/account")["data"]
    emit(
        state.json,
        data,
        lambda d: block(
            "Account",
            [
                ("Email", d["email"]),
                ("ID", d["id"]),
                ("Credits", number(d["credits"], 2)),
                ("Held", number(d.get("held", 0), 2)),
                ("Earned", number(d.get("earnings", 0), 2)),
            ],
        ),
    )
