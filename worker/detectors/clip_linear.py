"""UnivFD linear probe on CLIP image features (placeholder: being written)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from worker.detectors.clip_backbone import ClipBackboneConfig


class ClipLinearConfig(BaseModel):
    backbone: ClipBackboneConfig = Field(default_factory=ClipBackboneConfig)
    head: str = Field(default="univfd_fc_weights.pth", description="linear head: model-store name or path")
    looks_at: Literal["face", "frame"] = "frame"
