from __future__ import annotations

import pytest

from worker.aggregate import FaceScore, FrameScore, decide_verdict, label_score, score_tracks
from worker.settings import AggregateConfig


def scores(track: int, frames: range, detector: str, value: float) -> list[FaceScore]:
    return [FaceScore(track, f, 0, detector, value) for f in frames]


def test_no_face_is_no_face_with_no_score() -> None:
    verdict = decide_verdict([], AggregateConfig(), frames_requested=16, frames_decoded=16)
    assert verdict.label == "no_face"
    assert verdict.score is None
    assert verdict.coverage.faces == 0 and verdict.coverage.frames_decoded == 16


def test_one_fake_track_makes_the_media_fake() -> None:
    items = scores(0, range(8), "meso4", 0.1) + scores(1, range(8), "meso4", 0.9)
    verdict = decide_verdict(items, AggregateConfig(threshold=0.5), 8, 8)
    assert verdict.label == "fake"
    assert verdict.score == pytest.approx(0.9)
    assert verdict.coverage.tracks == 2 and verdict.coverage.faces == 16
    assert verdict.detectors == {"meso4": pytest.approx(0.9)}


def test_short_spurious_track_is_ignored_in_a_video() -> None:
    items = scores(0, range(16), "meso4", 0.2) + scores(1, range(3, 4), "meso4", 0.99)
    verdict = decide_verdict(items, AggregateConfig(), 16, 16)
    assert verdict.label == "real"
    assert verdict.score == pytest.approx(0.2)
    assert [t.counted for t in verdict.tracks] == [True, False]


def test_track_score_averages_detectors_and_frames() -> None:
    items = scores(0, range(4), "a", 0.2) + scores(0, range(4), "b", 0.6) + [FaceScore(0, 4, 0, "a", 1.0)]
    (track,) = score_tracks(items)
    assert track.detectors == {"a": pytest.approx(0.36), "b": pytest.approx(0.6)}
    assert track.score == pytest.approx(0.48)
    assert (track.faces, track.first_frame, track.last_frame) == (5, 0, 4)


@pytest.mark.parametrize(
    ("score", "label"),
    [(0.5, "fake"), (0.45, "uncertain"), (0.4, "uncertain"), (0.39, "real"), (0.0, "real"), (1.0, "fake")],
)
def test_labels_around_threshold(score: float, label: str) -> None:
    assert label_score(score, AggregateConfig(threshold=0.5, uncertain_margin=0.1)) == label


def test_frame_detectors_join_the_face_part_as_a_mean() -> None:
    faces = scores(0, range(4), "meso4", 0.8)
    frames = [FrameScore(f, "clip_linear", v) for f, v in enumerate((0.2, 0.4, 0.2, 0.4))]
    verdict = decide_verdict(faces, AggregateConfig(), 4, 4, frames)
    assert verdict.detectors == {"meso4": pytest.approx(0.8), "clip_linear": pytest.approx(0.3)}
    assert verdict.score == pytest.approx(0.55) and verdict.label == "fake"


def test_frame_detectors_answer_when_there_is_no_face() -> None:
    frames = [FrameScore(0, "clip_linear", 0.1)]
    verdict = decide_verdict([], AggregateConfig(), 1, 1, frames)
    assert verdict.label == "real" and verdict.score == pytest.approx(0.1)
    assert verdict.coverage.faces == 0
