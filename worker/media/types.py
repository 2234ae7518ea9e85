"""What the media package hands to the rest of the worker: probed facts and decoded RGB frames."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class MediaInfo:
    """Facts read from a file's headers, before anything is decoded."""

    kind: Literal["image", "video"]
    format: str  # container/format short name: "jpeg", "png", "webp", "gif", "mp4", "webm", "avi", "mov", ...
    codec: str | None  # video codec name ("h264", "vp8", "mpeg4"); the image format for images
    width: int  # display width (after EXIF orientation for images)
    height: int
    duration_s: float | None  # None for images
    fps: float | None
    frame_count: int | None  # declared or estimated frames; 1 for images
    size_bytes: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values (str, int, float, None)."""
        return asdict(self)


@dataclass
class Frame:
    index: int  # frame index in the video (0 for an image)
    timestamp_s: float  # 0.0 for an image
    image: np.ndarray  # (H, W, 3) uint8 RGB, C-contiguous


@dataclass
class FrameSample:
    info: MediaInfo
    frames: list[Frame]
    requested: int  # frame indices planned: min(frames_per_video, frame count); 1 for an image
    decoded: int  # frames actually decoded (== len(frames))
    method: str  # "image", "decord", "pyav-seek", "pyav-sequential" or "pyav-keyframes"
