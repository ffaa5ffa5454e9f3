"""What the commands print: one JSON document on stdout with --json, rich tables on stdout
otherwise; progress, notes and errors always on stderr, so stdout stays clean for pipes."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import ProgressColumn, Task
from rich.table import Table
from rich.text import Text

from cli.client import ApiError, CliError
from cli.exits import INTERRUPTED

F = TypeVar("F", bound=Callable[..., Any])


def out() -> Console:
    # Looked up at each call: sys.stdout may have been swapped (tests, redirections).
    return Console(file=sys.stdout, soft_wrap=True)


def err() -> Console:
    return Console(file=sys.stderr, soft_wrap=True)


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def note(message: str) -> None:
    err().print(message)


def table(title: str | None, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    view = Table(title=title, title_justify="left")
    for name in columns:
        view.add_column(name, justify="right" if name[:1].islower() and name != "channel" else "left")
    for row in rows:
        view.add_row(*("" if cell is None else escape(str(cell)) for cell in row))
    return view


def key_values(title: str | None, values: Mapping[str, Any]) -> Table:
    view = Table(title=title, title_justify="left", show_header=False)
    view.add_column(style="bold")
    view.add_column()
    for name, value in values.items():
        view.add_row(escape(name), escape("" if value is None else str(value)))
    return view


def show_error(error: CliError, as_json: bool) -> None:
    console = err()
    console.print(f"[bold red]Error:[/] {escape(error.message)}")
    if isinstance(error, ApiError):
        for name, messages in flatten_errors(error.field_errors):
            console.print(f"  [red]{escape(name)}[/]: {escape(messages)}")
    if as_json:
        emit_json({"error": error.document})


def flatten_errors(errors: Any, prefix: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested {field: [messages] | {sub: ...}} as (dotted.field, "message; message")."""
    if isinstance(errors, dict):
        found = []
        for name, value in errors.items():
            found += flatten_errors(value, f"{prefix}.{name}" if prefix else str(name))
        return found
    if isinstance(errors, list) and all(isinstance(m, str) for m in errors):
        return [(prefix or "_", "; ".join(errors))]
    if isinstance(errors, list):
        found = []
        for item in errors:
            found += flatten_errors(item, prefix)
        return found
    return [(prefix or "_", str(errors))]


def reports_errors(command: F) -> F:
    """Expected failures end the command with their exit code and a readable message."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CliError as error:
            show_error(error, bool(kwargs.get("as_json")))
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            err().print("[yellow]Interrupted.[/]")
            raise typer.Exit(INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


class RateColumn(ProgressColumn):
    """Rows per second, from rich's own speed estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- rows/s" if speed is None else f"{speed:,.0f} rows/s", style="progress.data.speed")
