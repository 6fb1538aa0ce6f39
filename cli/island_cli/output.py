"""Text tables and key/value blocks as on the seed page, or JSON and nothing else."""

import json
from collections.abc import Callable, Sequence
from typing import Any

import click

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def number(value: Any, places: int) -> str:
    try:
        return f"{float(value):.{places}f}"
    except (TypeError, ValueError):
        return text(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """Aligned columns under upper-case headers."""
    cells = [[text(get(row)) for _, get in columns] for row in rows]
    headers = [header for header, _ in columns]
    widths = [max(len(c) for c in column) for column in zip(headers, *cells, strict=True)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def block(title: str, pairs: Sequence[tuple[str, Any]]) -> str:
    """A title and indented ``Label: value`` lines with the values aligned."""
    width = max(len(label) for label, _ in pairs) + 2
    lines = [f"  {(label + ':').ljust(width)}{text(value)}" for label, value in pairs]
    return "\n".join([title, *lines])


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def emit(json_mode: bool, data: Any, render: Callable[[Any], str]) -> None:
    """Print ``data`` as JSON, or as the text ``render`` makes of it."""
    if json_mode:
        emit_json(data)
    else:
        click.echo(render(data))


def page_note(meta: dict[str, Any] | None, shown: int) -> str | None:
    """A hint under a list when the server has more rows than it returned."""
    if not meta or shown >= meta.get("total", 0) - meta.get("offset", 0):
        return None
    first = meta["offset"] + 1
    return f"(rows {first}-{first + shown - 1} of {meta['total']}; see --limit and --offset)"


def emit_page(json_mode: bool, page: dict[str, Any], columns: Sequence[Column]) -> None:
    """A ``{"data": [...], "meta": ...}`` page: the rows as JSON, or a table and a hint."""
    rows = page["data"]
    if json_mode:
        emit_json(rows)
        return
    click.echo(table(rows, columns))
    note = page_note(page.get("meta"), len(rows))
    if note:
        click.echo(note)
