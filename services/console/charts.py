"""Charts as inline SVG, drawn on the server: no script or outside asset is needed to see them.
Every bar and point carries its number as text (and a <title> for a pointer's tooltip), so a
screen reader, a test and a person printing the page read the same figures as the picture."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

FUNNEL_STAGES = ("queued", "sent", "delivered", "opened", "clicked", "converted")
SERIES_COLOURS = {"sent": "#3b6fd4", "opened": "#2a9d8f", "clicked": "#e9a23b", "converted": "#c8553d"}
LABEL_WIDTH = 90
VALUE_WIDTH = 70
ROW = 22


def _number(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def funnel(by_channel: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str] | None = None,
           width: int = 560) -> Markup:
    """One group of horizontal bars per channel (titled with `labels`, else its name), a bar per
    stage (queued → converted), on one scale so channels compare at a glance."""
    labels = labels or {}
    if not by_channel:
        return Markup('<p class="empty">Nothing to chart yet.</p>')
    top = max([1] + [int(f.get(s) or 0) for f in by_channel.values() for s in FUNNEL_STAGES])
    bar_space = width - LABEL_WIDTH - VALUE_WIDTH
    parts: list[str] = []
    y = 0
    for channel, figures in by_channel.items():
        parts.append(f'<g class="channel" data-channel="{escape(channel)}">')
        parts.append(f'<text class="channel-name" x="0" y="{y + 16}">{escape(labels.get(channel, channel))}</text>')
        y += ROW + 2
        for stage in FUNNEL_STAGES:
            value = int(figures.get(stage) or 0)
            length = round(bar_space * value / top) if value else 0
            parts.append(
                f'<g class="stage" data-stage="{stage}" data-value="{value}">'
                f'<title>{escape(channel)} {stage}: {value:,}</title>'
                f'<text class="label" x="8" y="{y + 15}">{stage}</text>'
                f'<rect class="bar bar-{stage}" x="{LABEL_WIDTH}" y="{y + 3}" width="{max(length, 1)}"'
                f' height="{ROW - 6}"/>'
                f'<text class="value" x="{LABEL_WIDTH + length + 6}" y="{y + 15}">{value:,}</text></g>')
            y += ROW
        parts.append("</g>")
        y += 8
    return _svg(width, y, "Funnel per channel: queued, sent, delivered, opened, clicked, converted", parts,
                "chart funnel")


def bars(items: Sequence[tuple[str, float | None, str]], title: str, width: int = 560) -> Markup:
    """Horizontal bars for (label, value, value as text); negative values grow left of zero and
    a missing value (None) draws no bar but keeps its text (e.g. "no cost")."""
    if not items:
        return Markup('<p class="empty">Nothing to chart yet.</p>')
    label_width = 200
    values = [v for _, v, _ in items if v is not None]
    low, high = min([0.0, *values]), max([0.0, *values])
    span = (high - low) or 1.0
    bar_space = width - label_width - VALUE_WIDTH
    zero = label_width + bar_space * (-low / span)
    parts: list[str] = []
    for index, (label, value, text) in enumerate(items):
        y = index * ROW
        shown = label if len(label) <= 28 else label[:27] + "…"
        parts.append(f'<g class="item" data-label="{escape(label)}" data-value="{"" if value is None else value}">'
                     f'<title>{escape(label)}: {escape(text)}</title>'
                     f'<text class="label" x="0" y="{y + 15}">{escape(shown)}</text>')
        end = zero
        if value is not None:
            length = bar_space * abs(value) / span
            x = zero - length if value < 0 else zero
            end = zero + length if value >= 0 else zero
            kind = "negative" if value < 0 else "positive"
            parts.append(f'<rect class="bar {kind}" x="{x:.1f}" y="{y + 3}" width="{max(length, 1):.1f}" '
                         f'height="{ROW - 6}"/>')
        parts.append(f'<text class="value" x="{end + 6:.1f}" y="{y + 15}">{escape(text)}</text></g>')
    parts.append(f'<line class="axis" x1="{zero:.1f}" y1="0" x2="{zero:.1f}" y2="{len(items) * ROW}"/>')
    return _svg(width, len(items) * ROW + 4, title, parts, "chart bars")


def lines(points: Sequence[Mapping[str, Any]], series: Sequence[str], title: str, width: int = 640,
          height: int = 220) -> Markup:
    """A line per series over time (`points`: {"at", series...}, oldest first), with the time of
    the first and last point, the top of the scale, and a legend giving each series' total."""
    if not points:
        return Markup('<p class="empty">Nothing sent yet: the chart starts with the first message.</p>')
    left, right, top_pad, bottom = 44, 12, 12, 40
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    peak = max([1] + [int(p.get(s) or 0) for p in points for s in series])
    step = plot_w / max(len(points) - 1, 1)

    def xy(index: int, value: int) -> tuple[float, float]:
        return left + index * step, top_pad + plot_h - plot_h * value / peak

    parts = [f'<line class="axis" x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}"/>',
             f'<line class="axis" x1="{left}" y1="{top_pad}" x2="{left}" y2="{top_pad + plot_h}"/>',
             f'<text class="tick" x="{left - 6}" y="{top_pad + 4}" text-anchor="end">{peak:,}</text>',
             f'<text class="tick" x="{left - 6}" y="{top_pad + plot_h + 4}" text-anchor="end">0</text>',
             f'<text class="tick" x="{left}" y="{height - 22}">{escape(_short_time(points[0]["at"]))}</text>']
    if len(points) > 1:
        parts.append(f'<text class="tick" x="{left + plot_w}" y="{height - 22}" text-anchor="end">'
                     f'{escape(_short_time(points[-1]["at"]))}</text>')
    legend_x = left
    for name in series:
        colour = SERIES_COLOURS.get(name, "#555")
        coords = [xy(i, int(p.get(name) or 0)) for i, p in enumerate(points)]
        total = sum(int(p.get(name) or 0) for p in points)
        parts.append(f'<g class="series" data-series="{escape(name)}" data-total="{total}">')
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for (x, y), point in zip(coords, points, strict=True):
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                         f'<title>{escape(_short_time(point["at"]))} {escape(name)}: {int(point.get(name) or 0):,}'
                         f'</title></circle>')
        parts.append(f'<rect x="{legend_x}" y="{height - 12}" width="10" height="10" fill="{colour}"/>'
                     f'<text class="legend" x="{legend_x + 14}" y="{height - 3}">{escape(name)} {total:,}</text></g>')
        legend_x += 130
    return _svg(width, height, title, parts, "chart lines")


def _short_time(at: str) -> str:
    """2026-03-29T14:00:00Z → 2026-03-29 14:00 UTC."""
    return at.replace("T", " ")[:16] + " UTC" if "T" in at else at


def _svg(width: int, height: int, title: str, parts: list[str], css: str) -> Markup:
    return Markup(f'<svg class="{css}" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
                  f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
                  f'<title>{escape(title)}</title>{"".join(parts)}</svg>')
