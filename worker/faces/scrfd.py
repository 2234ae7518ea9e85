"""SCRFD / RetinaFace face detection (insightface's ONNX format) decoded here with onnxruntime.

The default weights are `scrfd_500m_bnkps.onnx` from the model store; `DFW_FACES__SCRFD_WEIGHTS` may name
another manifest entry or the path of an operator's file in the same format, e.g. `det_10g.onnx` or
`det_500m.onnx` from an insightface buffalo pack. Such a model has, per feature stride, a score map, a box
map (distances from the anchor centre to the four sides, in units of the stride) and a keypoint map
(offsets of five landmarks, same units): 9 outputs for strides 8/16/32 with 2 anchors per cell, or 15 for
strides 8..128 with 1 anchor. Models without keypoints (6 or 10 outputs) are refused: the pipeline needs
landmarks.

The `insightface` package is not used: its wheel requires `opencv-python`, which replaces the pinned
`opencv-python-headless` build of cv2 in the same environment. The decoding below follows the published
SCRFD post-processing (distance2bbox, distance2kps, greedy NMS).
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

from worker.errors import ModelUnavailable
from worker.faces.types import Face
from worker.models import ModelStore
from worker.settings import FaceConfig

logger = logging.getLogger(__name__)

SCRFD_WEIGHTS = "scrfd_500m_bnkps.onnx"
INPUT_MEAN = 127.5
INPUT_STD = 128.0
LAYOUTS = {9: ((8, 16, 32), 2), 15: ((8, 16, 32, 64, 128), 1)}  # outputs -> strides, anchors per cell


def distance2bbox(centres: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """(N, 2) anchor centres and (N, 4) left/top/right/bottom distances -> (N, 4) x0, y0, x1, y1."""
    return np.concatenate([centres - distance[:, :2], centres + distance[:, 2:4]], axis=1)


def distance2kps(centres: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """(N, 2) anchor centres and (N, 2K) offsets -> (N, K, 2) keypoints."""
    return centres[:, None, :] + distance.reshape(len(distance), -1, 2)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy non-maximum suppression; indices of the kept boxes, most confident first."""
    x0, y0, x1, y1 = boxes.T
    areas = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        w = np.maximum(0.0, np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]) + 1)
        inter = w * h
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou <= threshold]
    return keep


class ScrfdFaceDetector:
    name = "scrfd"

    def __init__(self, config: FaceConfig, store: ModelStore) -> None:
        self.config = config
        self.store = store
        self._session: Any = None
        self._input_name = ""
        self._strides: tuple[int, ...] = ()
        self._anchors = 0
        self._centres: dict[tuple[int, int, int], np.ndarray] = {}

    def weight_names(self) -> list[str]:
        return [self.config.scrfd_weights]

    def load(self) -> None:
        if self._session is not None:
            return
        import onnxruntime as ort

        ref = self.config.scrfd_weights
        path = self.store.resolve(ref)
        options = ort.SessionOptions()
        if self.config.scrfd_threads:
            options.intra_op_num_threads = self.config.scrfd_threads
        wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        providers = [p for p in wanted if p in ort.get_available_providers()]
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for unreadable graphs
            raise ModelUnavailable(ref, f"onnxruntime cannot load {path}: {exc}") from exc
        outputs = len(session.get_outputs())
        if outputs not in LAYOUTS:
            raise ModelUnavailable(
                ref, f"{outputs} outputs: not an SCRFD/RetinaFace model with keypoints (need 9 or 15)"
            )
        self._strides, self._anchors = LAYOUTS[outputs]
        self._input_name = session.get_inputs()[0].name
        self._session = session

    def lineage(self) -> dict[str, Any]:
        ref = self.config.scrfd_weights
        return {
            "name": self.name,
            "weights": {ref: self.store.sha256_of(ref)},
            "config": self.config.model_dump(mode="json"),
        }

    def _anchor_centres(self, rows: int, cols: int, stride: int) -> np.ndarray:
        key = (rows, cols, stride)
        if key not in self._centres:
            ys, xs = np.mgrid[:rows, :cols]
            centres = (np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride).astype(np.float32)
            self._centres[key] = np.repeat(centres, self._anchors, axis=0)
        return self._centres[key]

    def detect(self, image: np.ndarray, frame_index: int = 0, timestamp_s: float = 0.0) -> list[Face]:
        """Faces in one RGB frame, boxes in the frame's own pixels, most confident first."""
        self.load()
        height, width = image.shape[:2]
        scale = min(1.0, self.config.detect_long_side / max(height, width))
        small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
        small = image
        if scale < 1.0:
            small = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA)
        # the network takes RGB normalised to about [-1, 1], padded at the bottom-right to a multiple of 32
        pad_h, pad_w = -(-small_h // 32) * 32, -(-small_w // 32) * 32
        blob = np.zeros((1, 3, pad_h, pad_w), np.float32)
        blob[0, :, :small_h, :small_w] = (
            np.transpose(small, (2, 0, 1)).astype(np.float32) - INPUT_MEAN
        ) / INPUT_STD
        outputs = self._session.run(None, {self._input_name: blob})
        boxes, kps, scores = self._decode(outputs, pad_h, pad_w)
        if not len(scores):
            return []
        keep = nms(boxes, scores, self.config.nms_threshold)
        return self._faces(boxes[keep] / scale, kps[keep] / scale, scores[keep], (width, height),
                           frame_index, timestamp_s)  # fmt: skip

    def _decode(
        self, outputs: list[np.ndarray], pad_h: int, pad_w: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        levels = len(self._strides)
        boxes, kps, scores = [], [], []
        for level, stride in enumerate(self._strides):
            score = outputs[level].reshape(-1)
            hits = np.flatnonzero(score >= self.config.scrfd_score_threshold)
            if not hits.size:
                continue
            centres = self._anchor_centres(pad_h // stride, pad_w // stride, stride)[hits]
            distances = outputs[levels + level].reshape(-1, 4)[hits] * stride
            offsets = outputs[2 * levels + level].reshape(len(score), -1)[hits] * stride
            boxes.append(distance2bbox(centres, distances))
            kps.append(distance2kps(centres, offsets))
            scores.append(score[hits])
        if not scores:
            empty = np.zeros((0,), np.float32)
            return empty.reshape(0, 4), empty.reshape(0, 5, 2), empty
        return np.concatenate(boxes), np.concatenate(kps), np.concatenate(scores)

    def _faces(
        self,
        boxes: np.ndarray,
        kps: np.ndarray,
        scores: np.ndarray,
        size: tuple[int, int],
        frame_index: int,
        timestamp_s: float,
    ) -> list[Face]:
        faces: list[Face] = []
        width, height = size
        for box, points, score in zip(boxes, kps, scores, strict=True):
            x0, y0 = max(0.0, float(box[0])), max(0.0, float(box[1]))
            x1, y1 = min(float(width), float(box[2])), min(float(height), float(box[3]))
            if x1 - x0 < self.config.min_face_px or y1 - y0 < self.config.min_face_px:
                continue
            landmarks = np.asarray(points[:5], np.float32)
            faces.append(
                Face(
                    frame_index, timestamp_s, len(faces), (x0, y0, x1 - x0, y1 - y0), landmarks, float(score)
                )
            )
            if len(faces) >= self.config.max_faces_per_frame:
                break
        return faces
