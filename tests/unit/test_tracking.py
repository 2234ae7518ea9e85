from __future__ import annotations

import numpy as np

from worker.faces.tracking import assign_tracks, box_iou
from worker.faces.types import Face


def face(frame: int, x: float, y: float, size: float = 50.0) -> Face:
    return Face(frame, frame / 10, 0, (x, y, size, size), np.zeros((5, 2), np.float32), 0.9)


def test_iou() -> None:
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert abs(box_iou((0, 0, 10, 10), (5, 0, 15, 10)) - 50 / 150) < 1e-9


def test_two_people_moving_keep_their_tracks() -> None:
    frames = [[face(i, 10 + 3 * i, 10), face(i, 300 - 3 * i, 20)] for i in range(6)]
    frames[3].reverse()  # detector order within a frame must not matter
    count = assign_tracks(frames, min_iou=0.3)
    assert count == 2
    left = {f.track_id for fr in frames for f in fr if f.box[0] < 150}
    right = {f.track_id for fr in frames for f in fr if f.box[0] >= 150}
    assert len(left) == 1 and len(right) == 1 and left != right


def test_a_jump_starts_a_new_track_and_a_gap_ends_one() -> None:
    frames = [[face(0, 10, 10)], [face(1, 400, 400)], [], [], [], [face(5, 400, 400)]]
    assert assign_tracks(frames, min_iou=0.3, max_gap=2) == 3
    assert [f.track_id for fr in frames for f in fr] == [0, 1, 2]
