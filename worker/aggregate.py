"""Scores -> verdict. Pure functions; each policy is versioned and its name is stored with the verdict.

Policy `max_track_mean/2`:
1. a track's score for one face detector is the mean of that detector's face scores along the track;
2. a track's score is the mean over face detectors;
3. tracks shorter than a quarter of the longest track are ignored (one-frame false detections in a video
   must not decide it; in an image every track has one face, so every face counts);
4. the face part is the highest track score: one manipulated face makes the media fake;
5. the frame part (detectors that look at whole frames) is the mean over frame detectors of each one's mean
   frame score;
6. the media score is the mean of the parts present (with face detectors only, exactly the face part);
7. label: `fake` at or above the threshold, `uncertain` within `uncertain_margin` below it, else `real`;
   nothing to score (no face and no frame detector) is `no_face` with no score, never a silent 0.5.
Version 1 was steps 1-4 and 7 (face detectors only); its verdicts equal version 2's for face detectors.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from worker.settings import AggregateConfig

Label = Literal["fake", "real", "uncertain", "no_face"]


@dataclass(frozen=True)
class FaceScore:
    track_id: int
    frame_index: int
    face_index: int
    detector: str
    score: float


@dataclass(frozen=True)
class FrameScore:
    """A whole-frame detector's score for one sampled frame."""

    frame_index: int
    detector: str
    score: float
    timestamp_s: float = 0.0


@dataclass(frozen=True)
class TrackScore:
    track_id: int
    faces: int
    first_frame: int
    last_frame: int
    score: float
    detectors: dict[str, float]
    counted: bool


@dataclass(frozen=True)
class Coverage:
    frames_requested: int
    frames_decoded: int
    faces: int
    tracks: int


@dataclass(frozen=True)
class Verdict:
    label: Label
    score: float | None
    threshold: float
    policy: str
    coverage: Coverage
    detectors: dict[str, float] = field(default_factory=dict)
    tracks: list[TrackScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_tracks(scores: Iterable[FaceScore]) -> list[TrackScore]:
    by_track: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    frames: dict[int, set[int]] = defaultdict(set)
    for item in scores:
        by_track[item.track_id][item.detector].append(item.score)
        frames[item.track_id].add(item.frame_index)
    longest = max((len(f) for f in frames.values()), default=0)
    floor = max(1, math.ceil(longest / 4))
    tracks = []
    for track_id in sorted(by_track):
        detectors = {name: sum(v) / len(v) for name, v in sorted(by_track[track_id].items())}
        seen = frames[track_id]
        tracks.append(
            TrackScore(
                track_id=track_id,
                faces=len(seen),
                first_frame=min(seen),
                last_frame=max(seen),
                score=sum(detectors.values()) / len(detectors),
                detectors=detectors,
                counted=len(seen) >= floor,
            )
        )
    return tracks


def label_score(score: float, config: AggregateConfig) -> Label:
    threshold = resolved_threshold(config)
    if score >= threshold:
        return "fake"
    if score >= threshold - config.uncertain_margin:
        return "uncertain"
    return "real"


DEFAULT_THRESHOLD = 0.5


def resolved_threshold(config: AggregateConfig) -> float:
    return DEFAULT_THRESHOLD if config.threshold is None else config.threshold


def score_frames(scores: Iterable[FrameScore]) -> dict[str, float]:
    """Per frame detector: the mean of its frame scores."""
    by_detector: dict[str, list[float]] = defaultdict(list)
    for item in scores:
        by_detector[item.detector].append(item.score)
    return {name: sum(v) / len(v) for name, v in sorted(by_detector.items())}


def decide_verdict(
    scores: Iterable[FaceScore],
    config: AggregateConfig,
    frames_requested: int,
    frames_decoded: int,
    frame_scores: Iterable[FrameScore] = (),
) -> Verdict:
    score_list = list(scores)
    tracks = score_tracks(score_list)
    faces = len({(s.frame_index, s.track_id) for s in score_list})
    coverage = Coverage(frames_requested, frames_decoded, faces, len(tracks))
    counted = [t for t in tracks if t.counted]
    frame_detectors = score_frames(frame_scores)
    detectors = {
        name: max(t.detectors[name] for t in counted if name in t.detectors)
        for name in sorted({n for t in counted for n in t.detectors})
    }
    parts = [max(t.score for t in counted)] if counted else []
    if frame_detectors:
        parts.append(sum(frame_detectors.values()) / len(frame_detectors))
    if not parts:
        return Verdict("no_face", None, resolved_threshold(config), config.policy, coverage, {}, tracks)
    score = sum(parts) / len(parts)
    return Verdict(
        label_score(score, config),
        score,
        resolved_threshold(config),
        config.policy,
        coverage,
        {**detectors, **frame_detectors},
        tracks,
    )
