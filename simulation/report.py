"""A finished run's comparison shaped for its page: the live and the draft replays
side by side (``SimulationRun.result``, schema in docs/simulation.md), the charts
drawn on the server (``turnaround.charts``), every figure also in a table.

Pure: a result dict in, plain values and SVG strings out (the chart module
escapes every text, so the SVGs may be marked safe)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.utils.dateparse import parse_datetime
from django.utils.safestring import SafeString, mark_safe

from network.models import Priority
from routing.models import TIERS
from turnaround import charts

ARMS = ("live", "draft")
ARM_NAMES = {"live": "Live rules", "draft": "Draft"}
ARM_CLASSES = {"live": "series-0", "draft": "series-1"}
# The per-reader chart: the busiest readers (of either arm), the rest in the table.
CHART_READERS = 30


def _safe(svg: str) -> SafeString:
    return mark_safe(svg)  # noqa: S308 - the chart module escapes every text


def _series(values: Mapping[str, Sequence[float | None]]) -> list[charts.Series]:
    return [charts.Series(ARM_NAMES[arm], values[arm], ARM_CLASSES[arm]) for arm in ARMS]


def _unit(seconds: list[float | None]) -> tuple[int, str]:
    top = max((s for s in seconds if s is not None), default=0.0)
    if top < 2 * 3600:
        return 60, "minutes"
    return 3600, "hours"


def _in(value: Any, unit_seconds: int) -> float | None:
    return None if value is None else round(float(value) / unit_seconds, 2)


def _get(data: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def _tiers(arms: dict[str, Any], key: str, title: str) -> SafeString:
    labels = [TIERS[t] for t in sorted(TIERS)]
    values = {
        arm: [float(_get(arms[arm], key, str(t), default=0)) for t in sorted(TIERS)] for arm in ARMS
    }
    return _safe(
        charts.grouped_bar_chart(
            labels=labels,
            series=_series(values),
            title=title,
            unit="studies",
            empty_message="No study was offered in this window.",
        )
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _priority_figures(figures: Any) -> dict[str, Any]:
    """One priority's figures of an arm, every key present (None when unknown)."""
    out: dict[str, Any] = {
        key: _number(_get(figures, key))
        for key in ("studies", "sla_met", "sla_missed", "sla_missed_share", "at_risk")
    }
    for measure in ("time_to_offer", "time_to_claim"):
        out[measure] = {q: _number(_get(figures, measure, q)) for q in ("p50", "p90", "max")}
    return out


def _priorities(arms: dict[str, Any]) -> dict[str, Any]:
    """Per priority: the rows of the table and the three charts."""
    rows = []
    raw: dict[str, dict[str, list[float | None]]] = {
        m: {arm: [] for arm in ARMS} for m in ("offer", "claim", "missed")
    }
    for p, label in Priority.choices:
        row: dict[str, Any] = {"priority": p, "label": str(label)}
        for arm in ARMS:
            figures = _priority_figures(_get(arms[arm], "by_priority", str(p), default={}))
            row[arm] = figures
            raw["offer"][arm].append(_get(figures, "time_to_offer", "p90"))
            raw["claim"][arm].append(_get(figures, "time_to_claim", "p90"))
            share = figures.get("sla_missed_share")
            raw["missed"][arm].append(None if share is None else round(100 * float(share), 1))
        rows.append(row)
    labels = [r["label"] for r in rows]
    out: dict[str, Any] = {"rows": rows}
    for measure, what in (("offer", "first offer"), ("claim", "claim")):
        unit_seconds, unit = _unit([v for arm in ARMS for v in raw[measure][arm]])
        values = {arm: [_in(v, unit_seconds) for v in raw[measure][arm]] for arm in ARMS}
        out[f"{measure}_chart"] = _safe(
            charts.grouped_bar_chart(
                labels=labels,
                series=_series(values),
                title=f"Arrival to {what}, 90th percentile ({unit})",
                unit=unit,
                empty_message=f"No study reached its {what} in this window.",
            )
        )
    out["missed_chart"] = _safe(
        charts.grouped_bar_chart(
            labels=labels,
            series=_series(raw["missed"]),
            title="Share that missed its turnaround target (%)",
            unit="%",
            max_value=100,
            empty_message="No study with a known outcome in this window.",
        )
    )
    return out


def _readers(arms: dict[str, Any]) -> dict[str, Any]:
    """Per reader, both arms' claims and work (busiest first) and the work chart."""
    by_id: dict[int, dict[str, Any]] = {}
    for arm in ARMS:
        for r in _get(arms[arm], "readers", default=[]) or []:
            row = by_id.setdefault(
                int(r["radiologist_id"]),
                {"radiologist_id": int(r["radiologist_id"]), "name": r.get("name", "")},
            )
            row[arm] = r
    rows = sorted(
        by_id.values(),
        key=lambda row: (
            -max(float(_get(row, arm, "work", default=0) or 0) for arm in ARMS),
            row["name"],
        ),
    )
    shown = rows[:CHART_READERS]
    values = {arm: [float(_get(row, arm, "work", default=0) or 0) for row in shown] for arm in ARMS}
    chart = charts.grouped_bar_chart(
        labels=[row["name"] for row in shown],
        series=_series(values),
        title="Weighted work per reader (RVU)"
        + (f", the {CHART_READERS} busiest" if len(rows) > CHART_READERS else ""),
        unit="RVU",
        width=1000,
        height=300,
        show_values=len(shown) <= 12,
        empty_message="Nobody claimed anything in this window.",
    )
    return {"rows": rows, "chart": _safe(chart)}


def _reasons(arms: dict[str, Any]) -> list[dict[str, Any]]:
    counts: dict[str, dict[str, int]] = {}
    for arm in ARMS:
        for reason, n in _get(arms[arm], "unroutable", "reasons", default=[]) or []:
            counts.setdefault(str(reason), {})[arm] = int(n)
    return sorted(
        (
            {"reason": reason, **{arm: c.get(arm, 0) for arm in ARMS}}
            for reason, c in counts.items()
        ),
        key=lambda row: (-max(row[arm] for arm in ARMS), row["reason"]),
    )


def _figures(arms: dict[str, Any]) -> list[dict[str, Any]]:
    """The headline numbers, one row each, live beside draft."""

    def row(label: str, *path: str, percent: bool = False) -> dict[str, Any]:
        values = {arm: _get(arms[arm], *path) for arm in ARMS}
        if percent:
            values = {k: None if v is None else round(100 * float(v), 1) for k, v in values.items()}
        return {"label": label, "key": "-".join(path), **values}

    return [
        row("Claimed", "claimed"),
        row("Unclaimed at the end of the window", "unclaimed_at_end"),
        row("Escalations (widened to a further tier)", "escalations"),
        row("Ever unroutable", "unroutable", "count"),
        row("Never offered at all", "unroutable", "never_offered"),
        row("Readers with work", "fairness", "readers"),
        row("Mean work per reader (RVU)", "fairness", "mean_work"),
        row("Most work of a reader (RVU)", "fairness", "max_work"),
        row("Fairness: coefficient of variation", "fairness", "coefficient_of_variation"),
        row("Fairness: max ÷ mean", "fairness", "max_over_mean"),
    ]


def _when(value: Any) -> Any:
    return parse_datetime(value) if isinstance(value, str) else None


def comparison(result: dict[str, Any]) -> dict[str, Any]:
    """Everything the run page shows of a done run's result."""
    arms = {arm: _get(result, "arms", arm, default={}) or {} for arm in ARMS}
    elsewhere = result.get("elsewhere") or {}
    recorded = result.get("recorded") or {}
    compared = int(recorded.get("compared") or 0)
    same = int(recorded.get("same") or 0)
    return {
        "window_start": _when(_get(result, "window", "start")),
        "window_end": _when(_get(result, "window", "end")),
        "studies": result.get("studies", 0),
        "history_began": _when(result.get("history_began")),
        "reading_model": result.get("reading_model") or {},
        "figures": _figures(arms),
        "first_offer_chart": _tiers(arms, "first_offer_by_tier", "First offer by tier"),
        "final_tier_chart": _tiers(arms, "final_tier", "Tier when claimed or at the end"),
        "unroutable_reasons": _reasons(arms),
        "priorities": _priorities(arms),
        "readers": _readers(arms),
        "elsewhere": {
            "count": int(elsewhere.get("count") or 0),
            "percent": round(100 * float(elsewhere.get("share") or 0), 1),
            "sample": [
                {**item, "arrived": _when(item.get("arrived_at"))}
                for item in elsewhere.get("sample") or []
            ],
        },
        "recorded": {
            "compared": compared,
            "same": same,
            "percent": round(100 * same / compared, 1) if compared else None,
            "differences": recorded.get("differences") or [],
        },
    }
