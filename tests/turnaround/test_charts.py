"""The inline SVG charts: pure functions from numbers to well-formed, escaped SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from turnaround import charts

NS = {"svg": "http://www.w3.org/2000/svg"}


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if "bar" in r.get("class", "")]


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [
        (0, 1),
        (-3, 1),
        (0.7, 1),
        (1, 1),
        (1.01, 2),
        (2.2, 2.5),
        (3, 5),
        (7.5, 10),
        (42, 50),
        (101, 200),
        (0.031, 0.05),
    ],
)
def test_nice_ceiling(value: float, ceiling: float) -> None:
    assert charts.nice_ceiling(value) == pytest.approx(ceiling)


def test_nice_ticks_are_even_and_cover_the_maximum() -> None:
    assert charts.nice_ticks(23) == [0, 5, 10, 15, 20, 25]
    assert charts.nice_ticks(100) == [0, 20, 40, 60, 80, 100]
    assert charts.nice_ticks(0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert charts.nice_ticks(7, count=2) == [0, 5, 10]
    with pytest.raises(ValueError):
        charts.nice_ticks(5, count=0)


def test_bar_heights_are_proportional_and_missing_values_draw_no_bar() -> None:
    svg = charts.bar_chart(labels=["a", "b", "c", "d"], values=[10, 20, None, 5], title="T")
    root = parse(svg)
    assert root.get("data-bars") == "3"
    heights = [float(b.get("height")) for b in bars(root)]
    assert heights[1] == pytest.approx(2 * heights[0]) and heights[0] == pytest.approx(
        2 * heights[2]
    )
    # Ticks step by 5 (a nice step for 20 / 5 intervals): the axis tops at 25.
    plot = 260 - charts.TOP - charts.BOTTOM
    assert heights[1] == pytest.approx(plot * 20 / 25, abs=0.1)
    assert "n/a" in svg


def test_percentages_top_at_100_with_a_reference_line_and_colours() -> None:
    svg = charts.bar_chart(
        labels=["STAT", "Urgent"],
        values=[50, 100],
        title="Compliance",
        unit="%",
        max_value=100,
        reference=90,
        reference_label="target 90%",
        css_classes=["p1", "p2"],
    )
    root = parse(svg)
    first, second = bars(root)
    assert float(second.get("height")) == pytest.approx(2 * float(first.get("height")))
    assert first.get("fill") == charts.PALETTE["p1"]
    assert "50%" in svg and "target 90%" in svg
    assert any(e.get("class") == "reference" for e in root.iter())


def test_text_is_escaped() -> None:
    svg = charts.bar_chart(labels=["<script>x</script>"], values=[1], title='a "b" & <c>')
    assert "<script>" not in svg
    root = parse(svg)  # still well-formed
    assert root.find("svg:title", NS).text == 'a "b" & <c>'


def test_line_breaks_at_missing_values_and_marks_each_point() -> None:
    svg = charts.line_chart(
        labels=["d1", "d2", "d3", "d4", "d5"],
        series=[
            charts.Series("median", [1, 2, None, 4, 5]),
            charts.Series("p90", [2, 3, 4, 5, 6], "series-1"),
        ],
        title="Over time",
        unit="hours",
    )
    root = parse(svg)
    lines = [e for e in root.iter("{http://www.w3.org/2000/svg}polyline")]
    assert len(lines) == 3  # median in two pieces, p90 in one
    assert len(list(root.iter("{http://www.w3.org/2000/svg}circle"))) == 9
    assert root.get("data-points") == "9"
    # Higher values are drawn higher (smaller y).
    p90 = lines[-1].get("points").split()
    ys = [float(p.split(",")[1]) for p in p90]
    assert ys == sorted(ys, reverse=True)


def test_empty_charts_say_so() -> None:
    line = charts.line_chart(
        labels=["a", "b"],
        series=[charts.Series("m", [None, None])],
        title="T",
        empty_message="Nothing",
    )
    bar = charts.bar_chart(labels=["a"], values=[0], title="T", empty_message="Nothing here")
    assert "Nothing" in line and parse(line).get("data-points") == "0"
    assert "Nothing here" in bar


def test_many_labels_are_thinned() -> None:
    labels = [f"day {i}" for i in range(90)]
    svg = charts.line_chart(
        labels=labels, series=[charts.Series("m", [float(i) for i in range(90)])], title="T"
    )
    shown = [e.text for e in parse(svg).iter() if e.get("class") == "xlabel"]
    assert 2 <= len(shown) <= 9 and shown[0] == "day 0"


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        charts.bar_chart(labels=["a", "b"], values=[1], title="T")
    with pytest.raises(ValueError):
        charts.line_chart(labels=["a"], series=[charts.Series("m", [1, 2])], title="T")


def test_output_is_deterministic() -> None:
    def make() -> str:
        return charts.bar_chart(labels=["a", "b"], values=[1.5, 3], title="T")

    assert make() == make()


def test_grouped_bars_stand_side_by_side_per_label_with_a_legend() -> None:
    svg = charts.grouped_bar_chart(
        labels=["Hyperlocal", "Regional", "Global"],
        series=[
            charts.Series("live", [40, 10, None]),
            charts.Series("draft", [20, 30, 5], "series-1"),
        ],
        title="First offer by tier",
        unit="studies",
    )
    root = parse(svg)
    assert root.get("data-bars") == "5"
    live = [b for b in bars(root) if "series-0" in b.get("class", "")]
    draft = [b for b in bars(root) if "series-1" in b.get("class", "")]
    assert len(live) == 2 and len(draft) == 3
    # Per label the live bar stands left of the draft's, and heights follow values.
    for left, right in zip(live, draft, strict=False):
        assert float(left.get("x")) < float(right.get("x"))
    assert float(live[0].get("height")) == pytest.approx(2 * float(draft[0].get("height")))
    assert float(draft[1].get("height")) == pytest.approx(3 * float(live[1].get("height")))
    # Bars of the next label start right of the previous label's.
    assert float(live[1].get("x")) > float(draft[0].get("x"))
    legend = [e for e in root.iter() if "legend" in e.get("class", "")]
    assert [e.get("fill") for e in legend] == [
        charts.PALETTE["series-0"],
        charts.PALETTE["series-1"],
    ]
    with pytest.raises(ValueError):
        charts.grouped_bar_chart(labels=["a"], series=[charts.Series("m", [1, 2])], title="T")


def test_grouped_bars_of_zero_are_figures_and_no_values_say_so() -> None:
    zeros = charts.grouped_bar_chart(
        labels=["STAT"], series=[charts.Series("live", [0.0])], title="T", empty_message="None"
    )
    assert "None" not in zeros and parse(zeros).get("data-bars") == "1"
    missing = charts.grouped_bar_chart(
        labels=["STAT"], series=[charts.Series("live", [None])], title="T", empty_message="None"
    )
    assert "None" in missing and parse(missing).get("data-bars") == "0"
