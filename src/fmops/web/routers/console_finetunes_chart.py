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

__all__ = ["Chart", "Point", "Series", "loss_chart", "short_number"]

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
class Chart:
    width: int
    height: int
    left: int
    top: int
    right_edge: int
    bottom_edge: int
    series: list[Series]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]

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
    found = []
    for e in events:
        value = e.get(field)
        if e.get("event") == event and isinstance(value, int | float) and math.isfinite(value):
            found.append((int(e.get("step") or 0), float(value)))
    return found


def _y_range(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    if high - low < 1e-12:  # a flat line: give it room above and below
        pad = abs(high) * 0.1 or 0.5
        return low - pad, high + pad
    pad = (high - low) * 0.06
    return max(low - pad, 0.0) if low >= 0 else low - pad, high + pad


def loss_chart(events: Iterable[Mapping[str, Any]], max_steps: int | None = None) -> Chart:
    """Train loss and validation loss against the step; x runs to the planned number of steps."""
    events = list(events)
    train = _values(events, "train", "loss")
    evals = _values(events, "eval", "eval_loss")
    planned = max_steps or max((int(e.get("max_steps") or 0) for e in events), default=0)
    last_step = max((s for s, _ in train + evals), default=0)
    x_max = max(planned, last_step, 1)
    y_low, y_high = _y_range([v for _, v in train + evals])
    right_edge, bottom_edge = WIDTH - RIGHT, HEIGHT - BOTTOM
    span_x, span_y = right_edge - LEFT, bottom_edge - TOP

    def point(step: int, value: float) -> Point:
        x = LEFT + span_x * step / x_max
        y = bottom_edge - span_y * (value - y_low) / (y_high - y_low)
        return Point(x, y, step, value)

    y_ticks = []
    for i in range(Y_TICKS):
        value = y_low + (y_high - y_low) * i / (Y_TICKS - 1)
        y_ticks.append((bottom_edge - span_y * i / (Y_TICKS - 1), short_number(value)))
    x_steps = sorted({0, x_max // 4, x_max // 2, 3 * x_max // 4, x_max}) if x_max >= 4 else [0, x_max]
    x_ticks = [(LEFT + span_x * s / x_max, str(s)) for s in x_steps]
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
