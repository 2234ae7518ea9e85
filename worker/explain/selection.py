"""Which faces or frames an explainer is shown: the most suspicious ones, at most one face per track."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from worker.aggregate import FaceScore, FrameScore
from worker.explain.base import Evidence
from worker.faces.types import Face
from worker.faces.yunet import crop_face
from worker.media import Frame
from worker.pipeline import square_frame

EVIDENCE_SIDE = 224  # pixels of a face crop or frame square sent to an explainer


NO_IMAGE = np.zeros((0, 0, 3), np.uint8)


def select_evidence(
    frames: Sequence[Frame] | None,
    faces: Sequence[Face],
    face_scores: Sequence[FaceScore],
    frame_scores: Sequence[FrameScore],
    top_k: int,
    margin: float = 1.3,
) -> list[Evidence]:
    """Top-k items by fake score: each track's most suspicious face and the scored frames, highest first.

    Without `frames` (an explainer that reads no pixels) the items carry empty images.
    """
    images = None if frames is None else {frame.index: frame for frame in frames}
    candidates = face_evidence(images, faces, face_scores, margin) + frame_evidence(images, frame_scores)
    candidates.sort(key=lambda item: (-item.score, item.frame_index, item.track_id or 0))
    return candidates[:top_k]


def face_evidence(
    images: dict[int, Frame] | None, faces: Sequence[Face], scores: Sequence[FaceScore], margin: float
) -> list[Evidence]:
    per_face: dict[tuple[int, int], dict[str, float]] = defaultdict(dict)
    for item in scores:
        per_face[(item.frame_index, item.face_index)][item.detector] = item.score
    best: dict[int, Evidence] = {}
    for face in faces:
        detectors = per_face.get((face.frame_index, face.face_index))
        frame = None if images is None else images.get(face.frame_index)
        if not detectors or (images is not None and frame is None):
            continue
        score = sum(detectors.values()) / len(detectors)
        if face.track_id in best and best[face.track_id].score >= score:
            continue
        crop = NO_IMAGE if frame is None else crop_face(frame.image, face, EVIDENCE_SIDE, margin)
        best[face.track_id] = Evidence(
            crop, "face", face.frame_index, face.timestamp_s, score, detectors, face.track_id
        )
    return list(best.values())


def frame_evidence(images: dict[int, Frame] | None, scores: Sequence[FrameScore]) -> list[Evidence]:
    per_frame: dict[int, tuple[float, dict[str, float]]] = {}
    for item in scores:
        per_frame.setdefault(item.frame_index, (item.timestamp_s, {}))[1][item.detector] = item.score
    items = []
    for index, (timestamp, detectors) in per_frame.items():
        frame = None if images is None else images.get(index)
        if images is not None and frame is None:
            continue
        score = sum(detectors.values()) / len(detectors)
        image = NO_IMAGE if frame is None else square_frame(frame.image, EVIDENCE_SIDE)
        items.append(Evidence(image, "frame", index, timestamp, score, detectors))
    return items
