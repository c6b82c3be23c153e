"""Charts as inline SVG, drawn on the server: no JavaScript, no build, no CDN.

Pure functions from numbers to an SVG string.  Every piece of text is escaped
here, so a caller may mark the result safe.  Three kinds:

- ``line_chart``: one or more series over the same labels (turnaround over time);
  a missing value (None) breaks the line rather than dropping to zero;
- ``bar_chart``: one value per label (compliance by priority, volume by hour),
  with an optional reference line (a target);
- ``grouped_bar_chart``: several series side by side per label (the simulator's
  live and draft replays).

The y axis starts at 0 and ends at a "nice" number (1, 2, 2.5 or 5 times a power
of ten) at or above the largest value, ticked evenly (``nice_ticks``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

Formatter = Callable[[float], str]

# Colours by class, drawn into the SVG so a chart looks the same saved on its own.
PALETTE = {
    "series-0": "#2451a6",
    "series-1": "#c76b00",
    "series-2": "#2f6f3e",
    "p1": "#b00020",
    "p2": "#c76b00",
    "p3": "#2f6f3e",
}


def colour(css_class: str) -> str:
    return PALETTE.get(css_class, PALETTE["series-0"])


# Plot area margins (left for the y labels, bottom for the x labels).
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 24, 34


def _number(value: float) -> str:
    """A tick or value label: at most two decimals, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    css_class: str = "series-0"


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 or 10 times a power of ten that is >= ``value``
    (1 for zero or less: an empty chart still has an axis)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-12):
            return float(step * power)
    return 10.0 * power  # pragma: no cover - the loop always returns


def nice_ticks(max_value: float, count: int = 5) -> list[float]:
    """``count`` + 1 evenly spaced ticks from 0 to a nice ceiling of ``max_value``,
    the step itself nice (so labels read 0, 5, 10, ... not 0, 4.6, 9.2, ...)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    step = nice_ceiling(max(max_value, 0.0) / count) if max_value > 0 else 1.0 / count
    return [round(step * i, 10) for i in range(count + 1)]


def _frame(
    *, width: int, height: int, title: str, description: str, kind: str, extra: str = ""
) -> tuple[str, str]:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" class="chart-svg {kind}" '
        f'aria-label="{escape(title)}"{extra}>'
        f"<title>{escape(title)}</title><desc>{escape(description)}</desc>"
    )
    return head, "</svg>"


def _y_axis(ticks: list[float], *, width: int, height: int, unit: str, fmt: Formatter) -> list[str]:
    top_value = ticks[-1]
    parts = []
    for tick in ticks:
        y = _y(tick, top_value, height)
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{width - RIGHT}" y2="{y:.1f}" '
            'stroke="#d8dde6" stroke-width="1"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="#5b6474">{escape(fmt(tick))}</text>'
        )
    if unit:
        parts.append(
            f'<text class="unit" x="4" y="{TOP - 10}" font-size="11" fill="#5b6474">'
            f"{escape(unit)}</text>"
        )
    return parts


def _y(value: float, top_value: float, height: int) -> float:
    plot = height - TOP - BOTTOM
    return TOP + plot - (value / top_value) * plot if top_value else float(TOP + plot)


def _x_labels(labels: Sequence[str], xs: list[float], *, height: int, max_labels: int) -> list[str]:
    """Every label if they fit, else every n-th (and the last, unless it would
    crowd the one before it)."""
    if not labels:
        return []
    every = max(1, math.ceil(len(labels) / max_labels))
    last = len(labels) - 1
    parts = []
    for i, (label, x) in enumerate(zip(labels, xs, strict=True)):
        shown = i % every == 0 or (i == last and last % every > every // 2)
        if not shown:
            continue
        parts.append(
            f'<text class="xlabel" x="{x:.1f}" y="{height - BOTTOM + 16}" text-anchor="middle" '
            f'font-size="11" fill="#5b6474">{escape(label)}</text>'
        )
    return parts


def _empty(width: int, height: int, message: str) -> str:
    return (
        f'<text class="empty" x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" '
        f'font-size="13" fill="#5b6474">{escape(message)}</text>'
    )


def line_chart(
    *,
    labels: Sequence[str],
    series: Sequence[Series],
    title: str,
    unit: str = "",
    value_format: Formatter = _number,
    width: int = 640,
    height: int = 260,
    empty_message: str = "No data in this range.",
    max_labels: int = 8,
) -> str:
    """Lines over shared x labels; a point per non-missing value (with a tooltip)."""
    for s in series:
        if len(s.values) != len(labels):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(labels)}")
    present = [v for s in series for v in s.values if v is not None]
    description = "; ".join(
        f"{s.name}: {sum(v is not None for v in s.values)} points" for s in series
    )
    head, tail = _frame(
        width=width,
        height=height,
        title=title,
        description=description,
        kind="line-chart",
        extra=f' data-points="{len(present)}"',
    )
    ticks = nice_ticks(max(present, default=0.0))
    parts = [head, *_y_axis(ticks, width=width, height=height, unit=unit, fmt=value_format)]
    plot_w = width - LEFT - RIGHT
    n = len(labels)
    xs = [LEFT + (plot_w * (i + 0.5) / n) for i in range(n)]
    parts += _x_labels(labels, xs, height=height, max_labels=max_labels)
    if not present:
        parts.append(_empty(width, height, empty_message))
    for s in series:
        segments: list[list[tuple[float, float]]] = [[]]
        for x, value in zip(xs, s.values, strict=True):
            if value is None:
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append((x, _y(value, ticks[-1], height)))
        for segment in segments:
            if len(segment) > 1:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in segment)
                parts.append(
                    f'<polyline class="line {escape(s.css_class)}" fill="none" '
                    f'stroke="{colour(s.css_class)}" stroke-width="2" points="{points}"/>'
                )
        for label, x, value in zip(labels, xs, s.values, strict=True):
            if value is None:
                continue
            y = _y(value, ticks[-1], height)
            parts.append(
                f'<circle class="point {escape(s.css_class)}" cx="{x:.1f}" cy="{y:.1f}" r="3" '
                f'fill="{colour(s.css_class)}">'
                f"<title>{escape(s.name)}, {escape(label)}: {escape(value_format(value))}"
                f"{escape(' ' + unit if unit else '')}</title></circle>"
            )
    # Legend, top right.
    for i, s in enumerate(series):
        x = width - RIGHT - 130 * (len(series) - i)
        parts.append(
            f'<rect class="legend {escape(s.css_class)}" x="{x}" y="2" width="10" height="10" '
            f'fill="{colour(s.css_class)}"/>'
            f'<text x="{x + 14}" y="11" font-size="11" fill="#1d2330">{escape(s.name)}</text>'
        )
    parts.append(tail)
    return "".join(parts)


def bar_chart(
    *,
    labels: Sequence[str],
    values: Sequence[float | None],
    title: str,
    unit: str = "",
    value_format: Formatter = _number,
    max_value: float | None = None,
    reference: float | None = None,
    reference_label: str = "",
    css_classes: Sequence[str] | None = None,
    width: int = 640,
    height: int = 260,
    empty_message: str = "No data in this range.",
    show_values: bool = True,
    max_labels: int = 24,
) -> str:
    """One bar per label (a missing value draws no bar and says "n/a"); the axis
    tops at ``max_value`` when given (e.g. 100 for percentages)."""
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} values for {len(labels)} labels")
    if css_classes is not None and len(css_classes) != len(labels):
        raise ValueError("one css class per bar")
    present = [v for v in values if v is not None]
    head, tail = _frame(
        width=width,
        height=height,
        title=title,
        description=", ".join(
            f"{label}: {'n/a' if v is None else value_format(v)}"
            for label, v in zip(labels, values, strict=True)
        ),
        kind="bar-chart",
        extra=f' data-bars="{len(present)}"',
    )
    top = max_value if max_value is not None else max(present, default=0.0)
    ticks = nice_ticks(top) if max_value is None else [max_value * i / 5 for i in range(6)]
    parts = [head, *_y_axis(ticks, width=width, height=height, unit=unit, fmt=value_format)]
    plot_w = width - LEFT - RIGHT
    n = max(len(labels), 1)
    slot = plot_w / n
    bar_w = max(2.0, slot * 0.7)
    xs = [LEFT + slot * (i + 0.5) for i in range(len(labels))]
    parts += _x_labels(labels, xs, height=height, max_labels=max_labels)
    if not any(present):
        parts.append(_empty(width, height, empty_message))
    base = _y(0, ticks[-1], height)
    for i, (label, x, value) in enumerate(zip(labels, xs, values, strict=True)):
        css_class = css_classes[i] if css_classes is not None else "series-0"
        css = escape(css_class)
        if value is None:
            if show_values:
                parts.append(
                    f'<text class="value na" x="{x:.1f}" y="{base - 4:.1f}" '
                    f'text-anchor="middle" font-size="11" fill="#5b6474">n/a</text>'
                )
            continue
        y = _y(min(value, ticks[-1]), ticks[-1], height)
        text = escape(value_format(value) + (" " + unit if unit and unit != "%" else unit))
        parts.append(
            f'<rect class="bar {css}" fill="{colour(css_class)}" '
            f'x="{x - bar_w / 2:.1f}" y="{y:.1f}" '
            f'width="{bar_w:.1f}" height="{base - y:.1f}"><title>{escape(label)}: {text}'
            f"</title></rect>"
        )
        if show_values:
            parts.append(
                f'<text class="value" x="{x:.1f}" y="{y - 4:.1f}" text-anchor="middle" '
                f'font-size="11" fill="#1d2330">{text}</text>'
            )
    if reference is not None and ticks[-1]:
        y = _y(min(reference, ticks[-1]), ticks[-1], height)
        parts.append(
            f'<line class="reference" x1="{LEFT}" y1="{y:.1f}" x2="{width - RIGHT}" '
            f'y2="{y:.1f}" stroke="#b00020" stroke-dasharray="4 3" stroke-width="1.5"/>'
        )
        if reference_label:
            parts.append(
                f'<text class="reference-label" x="{width - RIGHT}" y="{y - 4:.1f}" '
                f'text-anchor="end" font-size="11" fill="#b00020">{escape(reference_label)}</text>'
            )
    parts.append(tail)
    return "".join(parts)


def grouped_bar_chart(
    *,
    labels: Sequence[str],
    series: Sequence[Series],
    title: str,
    unit: str = "",
    value_format: Formatter = _number,
    max_value: float | None = None,
    width: int = 640,
    height: int = 260,
    empty_message: str = "No data in this range.",
    show_values: bool = True,
    max_labels: int = 24,
) -> str:
    """Bars side by side per label, one per series (live beside draft, say), with a
    legend; a missing value draws no bar.  The axis as ``bar_chart``'s."""
    for s in series:
        if len(s.values) != len(labels):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(labels)}")
    present = [v for s in series for v in s.values if v is not None]
    head, tail = _frame(
        width=width,
        height=height,
        title=title,
        description="; ".join(
            f"{s.name}: "
            + ", ".join(
                f"{label}: {'n/a' if v is None else value_format(v)}"
                for label, v in zip(labels, s.values, strict=True)
            )
            for s in series
        ),
        kind="bar-chart grouped",
        extra=f' data-bars="{len(present)}"',
    )
    top = max_value if max_value is not None else max(present, default=0.0)
    ticks = nice_ticks(top) if max_value is None else [max_value * i / 5 for i in range(6)]
    parts = [head, *_y_axis(ticks, width=width, height=height, unit=unit, fmt=value_format)]
    plot_w = width - LEFT - RIGHT
    slot = plot_w / max(len(labels), 1)
    bar_w = max(2.0, slot * 0.8 / max(len(series), 1))
    xs = [LEFT + slot * (i + 0.5) for i in range(len(labels))]
    parts += _x_labels(labels, xs, height=height, max_labels=max_labels)
    # Zeros are figures here (nothing escalated, offered at once): empty means none.
    if not present:
        parts.append(_empty(width, height, empty_message))
    base = _y(0, ticks[-1], height)
    for k, s in enumerate(series):
        css = escape(s.css_class)
        offset = (k - (len(series) - 1) / 2) * bar_w
        for label, x, value in zip(labels, xs, s.values, strict=True):
            if value is None:
                continue
            y = _y(min(value, ticks[-1]), ticks[-1], height)
            text = escape(value_format(value) + (" " + unit if unit and unit != "%" else unit))
            parts.append(
                f'<rect class="bar {css}" fill="{colour(s.css_class)}" '
                f'x="{x + offset - bar_w / 2:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{base - y:.1f}"><title>{escape(s.name)}, {escape(label)}: {text}'
                "</title></rect>"
            )
            if show_values:
                parts.append(
                    f'<text class="value" x="{x + offset:.1f}" y="{y - 4:.1f}" '
                    f'text-anchor="middle" font-size="10" fill="#1d2330">{text}</text>'
                )
    for i, s in enumerate(series):
        x = width - RIGHT - 130 * (len(series) - i)
        parts.append(
            f'<rect class="legend {escape(s.css_class)}" x="{x}" y="2" width="10" height="10" '
            f'fill="{colour(s.css_class)}"/>'
            f'<text x="{x + 14}" y="11" font-size="11" fill="#1d2330">{escape(s.name)}</text>'
        )
    parts.append(tail)
    return "".join(parts)
