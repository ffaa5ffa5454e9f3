"""Watching something that finishes later: a campaign until it is completed or cancelled, an
erasure until every service has confirmed. Polls the API, draws the state live on stderr, and
returns the last state with how the wait ended."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cli.client import CliError, Services
from cli.exits import UNREACHABLE
from cli.ui import err, note

CAMPAIGN_ENDS = ("completed", "cancelled")
CHANNEL_COLUMNS = ("queued", "sent", "delivered", "failed", "opened", "clicked", "converted")


def campaign_state(services: Services, campaign_id: str) -> dict[str, Any]:
    """The campaign's status with its report's figures, as --json prints them."""
    campaign = services.call("campaigns", "GET", f"/v1/campaigns/{campaign_id}")
    report = services.call("campaigns", "GET", f"/v1/campaigns/{campaign_id}/report")
    return {
        "campaign_id": campaign_id, "name": campaign.get("name"), "status": campaign["status"],
        "audience": report.get("audience"), "reach": report.get("reach"),
        "by_channel": report.get("by_channel", {}), "suppressed": report.get("suppressed", {}),
        "converted": report.get("converted"), "revenue": report.get("revenue"), "cost": report.get("cost"),
        "conversion_rate": report.get("conversion_rate"), "roi": report.get("roi"),
        "launched_at": campaign.get("launched_at"), "finished_at": campaign.get("finished_at"),
    }


def campaign_view(state: dict[str, Any], with_bars: bool = True) -> Group:
    """Per channel: a bar of what has an outcome (sent or failed) out of what is to be sent."""
    view = Table(title=f"Campaign {escape(state.get('name') or state['campaign_id'])}: {state['status']}",
                 title_justify="left")
    view.add_column("channel")
    if with_bars:
        view.add_column("progress")
    for name in CHANNEL_COLUMNS:
        view.add_column(name, justify="right")
    for channel, figures in state["by_channel"].items():
        done = figures.get("sent", 0) + figures.get("failed", 0)
        total = done + figures.get("queued", 0)
        cells: list[Any] = [channel]
        if with_bars:
            cells.append(ProgressBar(total=max(total, 1), completed=done if total else 0, width=30))
        view.add_row(*cells, *(str(figures.get(name, 0)) for name in CHANNEL_COLUMNS))
    suppressed = ", ".join(f"{reason} {count}" for reason, count in sorted(state["suppressed"].items()) if count)
    footer = Text(f"audience {state.get('audience') or 0} · reach {state.get('reach') or 0}"
                  f" · suppressed: {suppressed or 'none'}")
    return Group(view, footer)


def follow_campaign(services: Services, campaign_id: str, *, interval: float, timeout: float,
                    sleep: Callable[[float], None] = time.sleep) -> tuple[dict[str, Any], str]:
    """The last state and "completed", "cancelled" or "timed_out"."""
    deadline = time.monotonic() + timeout
    state: dict[str, Any] | None = None
    with Live(console=err(), refresh_per_second=4, transient=True) as live:
        while True:
            state = _poll(lambda: campaign_state(services, campaign_id), state, deadline, interval)
            live.update(campaign_view(state))
            if state["status"] in CAMPAIGN_ENDS:
                return state, state["status"]
            if time.monotonic() + interval > deadline:
                return state, "timed_out"
            sleep(interval)


def erasure_view(erasure: dict[str, Any]) -> Table:
    view = Table(title=f"Erasure {erasure['id']}: {erasure['status']}", title_justify="left")
    view.add_column("service")
    view.add_column("status")
    for service, status in sorted(erasure.get("services", {}).items()):
        view.add_row(service, Text(status, style="green" if status == "completed" else "yellow"))
    return view


def follow_erasure(services: Services, erasure_id: str, *, interval: float, timeout: float,
                   sleep: Callable[[float], None] = time.sleep) -> tuple[dict[str, Any], str]:
    """The last state and "completed" or "timed_out"."""
    deadline = time.monotonic() + timeout
    erasure: dict[str, Any] | None = None
    with Live(console=err(), refresh_per_second=4, transient=True) as live:
        while True:
            erasure = _poll(lambda: services.call("identity", "GET", f"/v1/erasures/{erasure_id}"), erasure,
                            deadline, interval)
            live.update(erasure_view(erasure))
            if erasure["status"] == "completed":
                return erasure, "completed"
            if time.monotonic() + interval > deadline:
                return erasure, "timed_out"
            sleep(interval)


def _poll(read: Callable[[], dict[str, Any]], last: dict[str, Any] | None, deadline: float,
          interval: float) -> dict[str, Any]:
    """A service that cannot be reached for a moment (a restart, a deploy) does not end the wait:
    the last state known stays on screen until the deadline. A first read must succeed."""
    try:
        return read()
    except CliError as error:
        if error.exit_code != UNREACHABLE or last is None or time.monotonic() + interval > deadline:
            raise
        note(f"[yellow]{error.message}; still waiting[/]")
        return last
