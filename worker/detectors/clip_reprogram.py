"""RepDFD model reprogramming on CLIP (placeholder: being written)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from worker.detectors.clip_backbone import ClipBackboneConfig


class ClipReprogramConfig(BaseModel):
    backbone: ClipBackboneConfig = Field(default_factory=ClipBackboneConfig)
    checkpoint: str = Field(
        default="repdfd_ffpp_deepfakes.pth", description="RepDFD checkpoint: name or path"
    )
    identity: Literal["arcface", "dlib"] = "arcface"
    arcface_weights: str = Field(
        default="w600k_r50.onnx", description="insightface ArcFace ONNX: name or path"
    )
    shrink_ratio: float = Field(default=0.7, gt=0.1, le=1.0)
