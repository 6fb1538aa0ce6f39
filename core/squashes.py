"""A database that applied only part of a chain of migrations since squashed into one.
Django cannot bring it forward: it drops the squashed migration from its plan and, the
chain's files being gone, applies nothing, silently. ``migrate`` (through the check
below) and ``make run`` refuse such a database and say what to do."""

from django.core.checks import Error, Tags, register
from django.db import connections
from django.db.migrations.loader import MigrationLoader

# The last commit whose checkout still holds the chains the squashed migrations replace.
BEFORE_THE_SQUASH = "357d40e"


def half_applied(loader: MigrationLoader) -> list[str]:
    """What to tell the owner of ``loader``'s database, one line a squashed chain that it
    applied part of; empty when there is nothing wrong."""
    problems = []
    for (app, name), squashed in sorted(loader.replacements.items()):
        applied = [n for a, n in squashed.replaces if (a, n) in loader.applied_migrations]
        if applied and (app, name) not in loader.applied_migrations:
            problems.append(
                f"The database applied only part of the migrations that {app}.{name} "
                f"replaces (it stopped at {app}.{applied[-1]}): migrate it with a checkout "
                f"of {BEFORE_THE_SQUASH} first, then with this one."
            )
    return problems


@register(Tags.database)
def check_squashed_chains(app_configs=None, databases=None, **kwargs) -> list[Error]:
    return [
        Error(message, id="core.E001")
        for alias in databases or ()
        for message in half_applied(MigrationLoader(connections[alias]))
    ]
