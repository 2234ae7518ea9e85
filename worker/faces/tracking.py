"""Greedy IoU tracking: links a face across sampled frames into tracks."""

from __future__ import annotations

from collections.abc import Sequence

from worker.faces.types import Face


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def assign_tracks(faces_by_frame: Sequence[list[Face]], min_iou: float, max_gap: int = 2) -> int:
    """Set `track_id` on every face; returns the number of tracks.

    Frames are processed in order; each face joins the live track whose last box overlaps it most (IoU at
    least `min_iou`), one face per track per frame, highest IoU pairs first. A track not seen for more than
    `max_gap` sampled frames ends.
    """
    last_box: dict[int, tuple[float, float, float, float]] = {}
    last_seen: dict[int, int] = {}
    next_id = 0
    for position, faces in enumerate(faces_by_frame):
        live = [t for t, seen in last_seen.items() if position - seen <= max_gap + 1]
        pairs = sorted(
            ((box_iou(last_box[t], face.box_xyxy()), t, i) for t in live for i, face in enumerate(faces)),
            reverse=True,
        )
        used_tracks: set[int] = set()
        used_faces: set[int] = set()
        for iou, track, index in pairs:
            if iou < min_iou or track in used_tracks or index in used_faces:
                continue
            faces[index].track_id = track
            used_tracks.add(track)
            used_faces.add(index)
        for index, face in enumerate(faces):
            if index not in used_faces:
                face.track_id = next_id
                next_id += 1
            last_box[face.track_id] = face.box_xyxy()
            last_seen[face.track_id] = position
    return next_id
