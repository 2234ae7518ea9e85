"""Face detection backends behind one interface, chosen by `settings.faces.backend`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from worker.faces.types import Face
    from worker.models import ModelStore
    from worker.settings import FaceConfig


class FaceDetector(Protocol):
    """Boxes in the frame's own pixels, 5 landmarks and a confidence per face, most confident first."""

    name: str

    def weight_names(self) -> list[str]: ...

    def load(self) -> None: ...

    def lineage(self) -> dict[str, Any]: ...

    def detect(self, image: np.ndarray, frame_index: int = 0, timestamp_s: float = 0.0) -> list[Face]: ...


def create_face_detector(config: FaceConfig, store: ModelStore) -> FaceDetector:
    """The configured backend, not yet loaded (weights are read by load())."""
    if config.backend == "scrfd":
        from worker.faces.scrfd import ScrfdFaceDetector

        return ScrfdFaceDetector(config, store)
    if config.backend == "yunet":
        from worker.faces.yunet import YuNetFaceDetector

        return YuNetFaceDetector(config, store)
    raise ValueError(f"unknown face detector backend {config.backend!r}")
