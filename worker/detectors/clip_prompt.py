"""CoOp prompt tuning on CLIP (placeholder: being written)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from worker.detectors.clip_backbone import ClipBackboneConfig


class ClipPromptConfig(BaseModel):
    backbone: ClipBackboneConfig = Field(default_factory=ClipBackboneConfig)
    context: str = Field(default="clip_prompt_context.pt", description="learned context: name or path")
    n_ctx: int = Field(default=16, ge=1, le=64)
    class_names: tuple[str, str] = ("real", "fake")
    looks_at: Literal["face", "frame"] = "frame"
