"""Any transformers image-classification checkpoint (placeholder: being written)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class HfClassifierConfig(BaseModel):
    model: str | None = Field(default=None, description="local directory, or org/repo in the HF cache")
    revision: str | None = Field(default=None, description="pinned revision (commit hash) for org/repo")
    looks_at: Literal["face", "frame"] = "face"
