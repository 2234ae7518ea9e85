"""Score-over-time plot geometry for the media page, drawn as inline SVG by the template (no JS library).

One series per face track (the mean over face detectors of each face's scores, at the face's timestamp),
plus one for whole-frame detectors when there are any; the threshold is a dashed line.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 12, 34  # margins around the plotting area
PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
FRAME_COLOR = "#555555"


def track_color(track_id: int) -> str:
    """One colour per track, shared by its line in the plot and its boxes on the frames."""
    return PALETTE[track_id % len(PALETTE)]


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    t: float
    score: float
    frame_index: int


@dataclass(frozen=True)
class Series:
    key: str  # "track-N" or "frames"
    label: str
    color: str
    dashed: bool
    points: list[Point]

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True)
class ScorePlot:
    width: int = WIDTH
    height: int = HEIGHT
    left: float = LEFT
    right: float = WIDTH - RIGHT
    top: float = TOP
    bottom: float = HEIGHT - BOTTOM
    series: list[Series] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    threshold_y: float | None = None


def mean_by_frame(rows: Iterable[dict[str, Any]]) -> list[tuple[int, float, float]]:
    """(frame index, timestamp, mean score over detectors) of score rows, in frame order."""
    scores: dict[int, list[float]] = defaultdict(list)
    times: dict[int, float] = {}
    for row in rows:
        scores[row["frame_index"]].append(float(row["score"]))
        times[row["frame_index"]] = float(row["timestamp_s"])
    return [(index, times[index], fmean(values)) for index, values in sorted(scores.items())]


def score_plot(
    faces: Sequence[dict[str, Any]],
    frame_scores: Sequence[dict[str, Any]],
    threshold: float | None,
    duration_s: float | None,
) -> ScorePlot:
    """Every face track's (and the whole-frame detectors') score over time, scaled into the SVG box."""
    by_track: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in faces:
        by_track[row["track_id"]].append(row)
    raw = [
        (f"track-{track}", f"track {track}", track_color(track), False, mean_by_frame(rows))
        for track, rows in sorted(by_track.items())
    ]
    if frame_scores:
        raw.append(("frames", "whole frame", FRAME_COLOR, True, mean_by_frame(frame_scores)))
    times = [t for *_, values in raw for _, t, _ in values]
    span = max([duration_s or 0.0, *times])
    plot = ScorePlot()
    x_of = x_scale(plot, span)
    series = [
        Series(key, label, color, dashed, [Point(x_of(t), y_of(plot, s), t, s, i) for i, t, s in values])
        for key, label, color, dashed, values in raw
    ]
    return ScorePlot(
        series=series,
        x_ticks=time_ticks(plot, span),
        y_ticks=[Tick(y_of(plot, v), f"{v:.2f}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)],
        threshold_y=None if threshold is None else y_of(plot, threshold),
    )


def y_of(plot: ScorePlot, score: float) -> float:
    return plot.bottom - min(max(score, 0.0), 1.0) * (plot.bottom - plot.top)


def x_scale(plot: ScorePlot, span: float) -> Callable[[float], float]:
    """Seconds -> x; a single instant (an image) sits in the middle."""
    if span <= 0:
        middle = (plot.left + plot.right) / 2
        return lambda t: middle
    return lambda t: plot.left + t / span * (plot.right - plot.left)


def time_ticks(plot: ScorePlot, span: float, count: int = 5) -> list[Tick]:
    if span <= 0:
        return [Tick((plot.left + plot.right) / 2, "0 s")]
    x_of = x_scale(plot, span)
    values = [span * i / (count - 1) for i in range(count)]
    return [Tick(x_of(v), f"{v:.1f} s") for v in values]
