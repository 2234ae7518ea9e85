"""Face boxes as the rest of the pipeline sees them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Face:
    frame_index: int
    timestamp_s: float
    face_index: int  # position within its frame, by descending detector confidence
    box: tuple[float, float, float, float]  # x, y, w, h in original frame pixels
    landmarks: np.ndarray  # (5, 2): right eye, left eye, nose tip, right and left mouth corners
    confidence: float
    crop: np.ndarray | None = None  # square RGB uint8 crop, filled by crop_faces
    track_id: int = -1
    detected: bool = True  # False: interpolated between two detections (FaceConfig.detect_every)

    def box_xyxy(self) -> tuple[float, float, float, float]:
        x, y, w, h = self.box
        return x, y, x + w, y + h
