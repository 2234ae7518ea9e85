"""Faces between detections: which sampled frames the face detector runs on, and the faces of the others.

With `FaceConfig.detect_every` = k > 1 the detector runs on every k-th sampled frame (and the last one), but
never leaves more than `FaceConfig.interpolate_within_s` seconds between two detections: sparse frames are
all detected, dense ones (short clips, many frames per video, a second pass) are not. A frame between two
detections gets the faces of both, matched by IoU: a face seen at both ends moves linearly (box and
landmarks, by time), one seen at one end only is carried to the frames nearer that end. Such faces have
`detected=False` and the lower confidence of their two ends. Pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from worker.faces.tracking import box_iou
from worker.faces.types import Face


def plan_detections(times: Sequence[float], every: int, max_gap_s: float) -> list[int]:
    """Positions (into the sampled frames, sorted by time) the face detector runs on.

    The first and the last frame; after a detection at p the next is at p + `every` or earlier, the latest
    frame no more than `max_gap_s` after p (the next frame at the latest).
    """
    count = len(times)
    if count == 0:
        return []
    if every <= 1:
        return list(range(count))
    plan = [0]
    while plan[-1] < count - 1:
        start = plan[-1]
        end = min(start + every, count - 1)
        while end > start + 1 and times[end] - times[start] > max_gap_s:
            end -= 1
        plan.append(end)
    return plan


def pair_faces(before: Sequence[Face], after: Sequence[Face], min_iou: float) -> list[tuple[int, int]]:
    """(i, j): before[i] and after[j] are the same face; highest IoU pairs first, each face once."""
    pairs = sorted(
        (
            (box_iou(a.box_xyxy(), b.box_xyxy()), i, j)
            for i, a in enumerate(before)
            for j, b in enumerate(after)
        ),
        reverse=True,
    )
    used_before: set[int] = set()
    used_after: set[int] = set()
    matched: list[tuple[int, int]] = []
    for iou, i, j in pairs:
        if iou < min_iou or i in used_before or j in used_after:
            continue
        matched.append((i, j))
        used_before.add(i)
        used_after.add(j)
    return matched


def blend(a: Face, b: Face, weight: float, frame_index: int, timestamp_s: float) -> Face:
    """The face `weight` of the way from a to b (0: a, 1: b)."""
    box = tuple(float((1 - weight) * u + weight * v) for u, v in zip(a.box, b.box, strict=True))
    landmarks = ((1 - weight) * a.landmarks + weight * b.landmarks).astype(np.float32)
    x, y, w, h = box
    return Face(
        frame_index, timestamp_s, 0, (x, y, w, h), landmarks, min(a.confidence, b.confidence), detected=False
    )


def carry(face: Face, frame_index: int, timestamp_s: float) -> Face:
    return Face(frame_index, timestamp_s, 0, face.box, face.landmarks.copy(), face.confidence, detected=False)


def interpolate_faces(
    before: Sequence[Face],
    after: Sequence[Face],
    weight: float,
    frame_index: int,
    timestamp_s: float,
    min_iou: float,
    max_faces: int,
) -> list[Face]:
    """The faces of a frame `weight` of the way (in time) from the detection `before` to the one `after`.

    Most confident first, at most `max_faces`, `face_index` numbering them, `detected=False`.
    """
    pairs = pair_faces(before, after, min_iou)
    faces = [blend(before[i], after[j], weight, frame_index, timestamp_s) for i, j in pairs]
    if weight <= 0.5:
        paired = {i for i, _ in pairs}
        faces += [carry(f, frame_index, timestamp_s) for i, f in enumerate(before) if i not in paired]
    else:
        paired = {j for _, j in pairs}
        faces += [carry(f, frame_index, timestamp_s) for j, f in enumerate(after) if j not in paired]
    faces.sort(key=lambda face: -face.confidence)
    faces = faces[:max_faces]
    for position, face in enumerate(faces):
        face.face_index = position
    return faces


def weight_between(before_s: float, after_s: float, at_s: float, position: tuple[int, int, int]) -> float:
    """How far `at_s` lies from `before_s` to `after_s`, in [0, 1]; by position when the times are equal."""
    first, middle, last = position
    if after_s > before_s:
        return min(max((at_s - before_s) / (after_s - before_s), 0.0), 1.0)
    return (middle - first) / (last - first) if last > first else 0.0
