"""The loss curves of a fine-tune as inline SVG, drawn on the server: no script, no CDN, and the same
picture in a test's HTTP answer as in the browser.

`loss_chart` turns the progress events of `FinetuneService.curve` (train events carry `loss`, eval
events `eval_loss`, both at a `step`) into polyline coordinates and axis ticks for a fixed view box;
the template only places them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Chart", "Frame", "Point", "Series", "loss_chart", "nice_step", "short_number"]

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 12, 30  # room for the axes' labels
Y_TICKS = 5


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    step: int
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    key: str  # "train" or "eval": the CSS class and the test id
    label: str
    points: list[Point]

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def last(self) -> Point | None:
        return self.points[-1] if self.points else None


@dataclass(frozen=True, slots=True)
class Frame:
    """A chart's view box, plotting area and axis ticks (`console/_chart_axes.html` draws them)."""

    width: int
    height: int
    left: int
    top: int
    right_edge: int
    bottom_edge: int
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]


@dataclass(frozen=True, slots=True)
class Chart(Frame):
    series: list[Series]

    @property
    def empty(self) -> bool:
        return not any(s.points for s in self.series)


def short_number(value: float) -> str:
    """3 significant digits, no exponent for the losses a chart shows (0.0123, 1.23, 12.3)."""
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.001:
        return f"{value:.2e}"
    return f"{value:.3g}"


def _values(events: Iterable[Mapping[str, Any]], event: str, field: str) -> list[tuple[int, float]]:
    """(step, value) in step order, one per step: the last one logged wins (the final evaluation repeats
    the last step's; a resumed run logs again the steps after its checkpoint)."""
    found: dict[int, float] = {}
    for e in events:
        value = e.get(field)
        if e.get("event") == event and isinstance(value, int | float) and math.isfinite(value):
            found[int(e.get("step") or 0)] = float(value)
    return sorted(found.items())


def nice_step(span: float, count: int) -> float:
    """A round tick spacing (1, 2, 2.5 or 5 times a power of ten) giving about `count` intervals."""
    raw = span / count if span > 0 else 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude * (1 + 1e-9))


def _label(value: float, step: float) -> str:
    decimals = max(
        0,
        -math.floor(math.log10(step))
        + (1 if round(step / 10 ** math.floor(math.log10(step)), 6) == 2.5 else 0),
    )
    return f"{value:.{decimals}f}" if abs(value) > step / 1e6 else "0"


def _y_axis(values: list[float]) -> tuple[float, float, list[float]]:
    """The y range on round numbers around the values, and its ticks."""
    if not values:
        return 0.0, 1.0, [0.0, 0.25, 0.5, 0.75, 1.0]
    low, high = min(values), max(values)
    if high - low < 1e-12:  # a flat line: give it room above and below
        pad = abs(high) * 0.1 or 0.5
        low, high = low - pad, high + pad
    step = nice_step(high - low, Y_TICKS - 1)
    y_low, y_high = math.floor(low / step) * step, math.ceil(high / step) * step
    count = round((y_high - y_low) / step)
    return y_low, y_high, [y_low + step * i for i in range(count + 1)]


def loss_chart(events: Iterable[Mapping[str, Any]], max_steps: int | None = None) -> Chart:
    """Train loss and validation loss against the step; x runs to the planned number of steps."""
    events = list(events)
    train = _values(events, "train", "loss")
    evals = _values(events, "eval", "eval_loss")
    planned = max_steps or max((int(e.get("max_steps") or 0) for e in events), default=0)
    last_step = max((s for s, _ in train + evals), default=0)
    x_max = max(planned, last_step, 1)
    y_low, y_high, y_values = _y_axis([v for _, v in train + evals])
    right_edge, bottom_edge = WIDTH - RIGHT, HEIGHT - BOTTOM
    span_x, span_y = right_edge - LEFT, bottom_edge - TOP

    def point(step: int, value: float) -> Point:
        x = LEFT + span_x * step / x_max
        y = bottom_edge - span_y * (value - y_low) / (y_high - y_low)
        return Point(x, y, step, value)

    y_step = y_values[1] - y_values[0]
    y_ticks = [(point(0, v).y, _label(v, y_step)) for v in y_values]
    x_step = max(1, math.ceil(nice_step(x_max, 4)))
    x_ticks = [(point(s, 0).x, str(s)) for s in range(0, x_max + 1, x_step)]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        top=TOP,
        right_edge=right_edge,
        bottom_edge=bottom_edge,
        series=[
            Series("train", "training loss", [point(s, v) for s, v in train]),
            Series("eval", "validation loss", [point(s, v) for s, v in evals]),
        ],
        x_ticks=x_ticks,
        y_ticks=y_ticks,
    )
