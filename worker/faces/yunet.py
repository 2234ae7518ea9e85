"""YuNet face detection through OpenCV's `cv2.FaceDetectorYN` (weights from the model store)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from worker.faces.types import Face
from worker.models import ModelStore
from worker.settings import FaceConfig

logger = logging.getLogger(__name__)

YUNET_WEIGHTS = "face_detection_yunet_2023mar.onnx"


class YuNetFaceDetector:
    name = "yunet"

    def __init__(self, config: FaceConfig, store: ModelStore) -> None:
        self.config = config
        self.store = store
        self._net: Any = None

    def weight_names(self) -> list[str]:
        return [YUNET_WEIGHTS]

    def load(self) -> None:
        if self._net is not None:
            return
        path = self.store.path(YUNET_WEIGHTS)
        self._net = cv2.FaceDetectorYN.create(
            str(path), "", (320, 320), self.config.score_threshold, self.config.nms_threshold, 5000
        )

    def lineage(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weights": {YUNET_WEIGHTS: self.store.entry(YUNET_WEIGHTS).sha256},
            "config": self.config.model_dump(mode="json"),
        }

    def detect(self, image: np.ndarray, frame_index: int = 0, timestamp_s: float = 0.0) -> list[Face]:
        """Faces in one RGB frame, boxes in the frame's own pixels, most confident first."""
        self.load()
        height, width = image.shape[:2]
        scale = min(1.0, self.config.detect_long_side / max(height, width))
        small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if scale < 1.0:
            bgr = cv2.resize(bgr, (small_w, small_h), interpolation=cv2.INTER_AREA)
        self._net.setInputSize((small_w, small_h))
        _, rows = self._net.detect(bgr)
        return self._faces_from_rows(rows, scale, (width, height), frame_index, timestamp_s)

    def _faces_from_rows(
        self,
        rows: np.ndarray | None,
        scale: float,
        size: tuple[int, int],
        frame_index: int,
        timestamp_s: float,
    ) -> list[Face]:
        if rows is None:
            return []
        faces: list[Face] = []
        width, height = size
        for row in sorted(rows, key=lambda r: -float(r[14])):
            x, y, w, h = (float(v) / scale for v in row[:4])
            x0, y0 = max(0.0, x), max(0.0, y)
            x1, y1 = min(float(width), x + w), min(float(height), y + h)
            if x1 - x0 < self.config.min_face_px or y1 - y0 < self.config.min_face_px:
                continue
            landmarks = np.asarray(row[4:14], np.float32).reshape(5, 2) / scale
            faces.append(
                Face(
                    frame_index,
                    timestamp_s,
                    len(faces),
                    (x0, y0, x1 - x0, y1 - y0),
                    landmarks,
                    float(row[14]),
                )
            )
            if len(faces) >= self.config.max_faces_per_frame:
                break
        return faces


def crop_face(image: np.ndarray, face: Face, size: int, margin: float) -> np.ndarray:
    """A square crop of side `margin` x the face box's longer side, centred on the box, resized to `size`.

    Parts of the square outside the frame are filled by edge replication so the face stays centred.
    """
    x, y, w, h = face.box
    side = max(w, h) * margin
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    x1, y1 = x0 + max(1, round(side)), y0 + max(1, round(side))
    height, width = image.shape[:2]
    pad = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    region = image[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    if any(pad):
        region = cv2.copyMakeBorder(region, *pad, cv2.BORDER_REPLICATE)
    interpolation = cv2.INTER_AREA if region.shape[0] > size else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(region, (size, size), interpolation=interpolation))


def crop_faces(frames: Sequence[tuple[np.ndarray, list[Face]]], size: int, margin: float) -> None:
    for image, faces in frames:
        for face in faces:
            face.crop = crop_face(image, face, size, margin)
