"""Which sampled frames get a face detection, and the faces of the frames between detections."""

from __future__ import annotations

import numpy as np
import pytest

from worker.faces.interpolation import interpolate_faces, plan_detections, weight_between
from worker.faces.types import Face


def face(x: float, y: float, size: float = 50.0, confidence: float = 0.9, frame: int = 0) -> Face:
    landmarks = np.array([[x + 10, y + 10], [x + 40, y + 10], [x + 25, y + 25], [x + 15, y + 40],
                          [x + 35, y + 40]], np.float32)  # fmt: skip
    return Face(frame, frame / 10, 0, (x, y, size, size), landmarks, confidence)


def test_every_frame_is_detected_by_default() -> None:
    assert plan_detections([0.0, 0.1, 0.2], every=1, max_gap_s=0.5) == [0, 1, 2]
    assert plan_detections([], every=3, max_gap_s=0.5) == []


def test_dense_frames_are_detected_every_kth_and_the_last() -> None:
    times = [i * 0.1 for i in range(8)]
    assert plan_detections(times, every=3, max_gap_s=1.0) == [0, 3, 6, 7]


def test_sparse_frames_are_all_detected() -> None:
    times = [i * 0.4 for i in range(6)]
    assert plan_detections(times, every=3, max_gap_s=0.5) == [0, 1, 2, 3, 4, 5]
    # dense then sparse: the gap rule shortens the step where frames spread out
    assert plan_detections([0.0, 0.1, 0.2, 0.3, 2.0, 2.1], every=3, max_gap_s=0.5) == [0, 3, 4, 5]


def test_a_face_seen_at_both_ends_moves_linearly() -> None:
    before, after = [face(100, 100)], [face(110, 105, size=60, confidence=0.8)]
    (middle,) = interpolate_faces(before, after, 0.25, 7, 0.7, min_iou=0.3, max_faces=8)
    assert middle.box == pytest.approx((102.5, 101.25, 52.5, 52.5))
    expected = 0.75 * before[0].landmarks + 0.25 * after[0].landmarks
    assert np.allclose(middle.landmarks, expected)
    assert (middle.frame_index, middle.timestamp_s, middle.face_index) == (7, 0.7, 0)
    assert middle.confidence == pytest.approx(0.8) and not middle.detected


def test_a_face_seen_at_one_end_is_carried_to_the_nearer_frames() -> None:
    stays, leaves, arrives = face(100, 100), face(400, 100, confidence=0.95), face(700, 300, confidence=0.85)
    before, after = [stays, leaves], [face(102, 101), arrives]
    near_before = interpolate_faces(before, after, 0.3, 1, 0.1, min_iou=0.3, max_faces=8)
    near_after = interpolate_faces(before, after, 0.7, 2, 0.2, min_iou=0.3, max_faces=8)
    assert [f.box[0] for f in near_before] == pytest.approx([400.0, 100.6])  # most confident first
    assert [f.face_index for f in near_before] == [0, 1]
    assert sorted(f.box[0] for f in near_after) == pytest.approx([101.4, 700.0])
    assert interpolate_faces(before, after, 0.5, 1, 0.1, 0.3, max_faces=1)[0].box[0] == 400.0


def test_weight_follows_time_else_position() -> None:
    assert weight_between(1.0, 2.0, 1.25, (0, 1, 4)) == pytest.approx(0.25)
    assert weight_between(1.0, 1.0, 1.0, (0, 1, 4)) == pytest.approx(0.25)
