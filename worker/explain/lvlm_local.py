"""`lvlm_local`: a transformers image-text-to-text model from a local directory (placeholder)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LvlmLocalConfig(BaseModel):
    model: str | None = Field(default=None, description="local directory of an image-text-to-text model")
    max_new_tokens: int = Field(default=160, ge=1, le=2048)
