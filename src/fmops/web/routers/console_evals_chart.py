"""The model-selection scatter as inline SVG, drawn on the server like the fine-tuning loss chart: each
candidate's mean score (y, 0 to 1) against its median latency or its cost per case (x), with its 95%
bootstrap interval as a vertical error bar. The template only places what `scatter` computes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fmops.web.routers.console_finetunes_chart import Frame, nice_step

__all__ = ["Dot", "Scatter", "scatter"]

WIDTH, HEIGHT = 420, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 36, 24, 34  # room for tick labels and a top dot's name
Y_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True, slots=True)
class Dot:
    label: str
    x: float
    y: float
    y_low: float  # the interval's ends, in the picture's coordinates
    y_high: float
    value_x: float
    score: float
    ci: tuple[float, float] | None
    recommended: bool
    label_left: bool  # in the right half: its name goes left of the dot, inside the picture


@dataclass(frozen=True, slots=True)
class Scatter(Frame):
    key: str  # "latency" or "cost": the test id
    x_label: str
    dots: list[Dot]
    left_out: list[str]  # candidates without a score or without the x value


def _tick(value: float, step: float) -> str:
    if step >= 1:
        return f"{value:,.0f}"
    return f"{value:.{max(0, -math.floor(math.log10(step)))}f}"


def scatter(
    ranking: Sequence[Mapping[str, Any]], field: str, key: str, x_label: str, recommended: str | None
) -> Scatter:
    """Each ranked candidate (`fmops.evals.select.rank`'s rows) at (row[field], score)."""
    usable = [r for r in ranking if r.get("score") is not None and r.get(field) is not None]
    x_max_value = max((float(r[field]) for r in usable), default=0.0)
    step = nice_step(x_max_value, 3) if x_max_value > 0 else 1.0
    x_max = max(step, math.ceil(x_max_value / step) * step)
    right_edge, bottom_edge = WIDTH - RIGHT, HEIGHT - BOTTOM
    span_x, span_y = right_edge - LEFT, bottom_edge - TOP

    def at_x(value: float) -> float:
        return LEFT + span_x * value / x_max

    def at_y(value: float) -> float:
        return bottom_edge - span_y * min(max(value, 0.0), 1.0)

    dots = []
    for r in usable:
        score = float(r["score"])
        ci = (float(r["ci"][0]), float(r["ci"][1])) if r.get("ci") else None
        low, high = ci if ci else (score, score)
        dots.append(
            Dot(
                str(r["model"]),
                at_x(float(r[field])),
                at_y(score),
                at_y(low),
                at_y(high),
                float(r[field]),
                score,
                ci,
                r["model"] == recommended,
                at_x(float(r[field])) > (LEFT + right_edge) / 2,
            )
        )
    ticks = round(x_max / step)
    return Scatter(
        key=key,
        x_label=x_label,
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        top=TOP,
        right_edge=right_edge,
        bottom_edge=bottom_edge,
        dots=dots,
        x_ticks=[(at_x(step * i), _tick(step * i, step)) for i in range(ticks + 1)],
        y_ticks=[(at_y(v), f"{v:.2f}") for v in Y_TICKS],
        left_out=[str(r["model"]) for r in ranking if r not in usable],
    )
