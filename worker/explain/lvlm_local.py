"""`lvlm_local`: a transformers image-text-to-text model from a local directory.

This module holds the configuration only, so that `worker.settings` can import it: the explainer class
needs `worker.explain.base`, which imports `worker.settings` (through `worker.aggregate` and `worker.media`),
so it lives in `worker.explain.image_text_model`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class LvlmLocalConfig(BaseModel):
    model: str | None = Field(default=None, description="local directory of an image-text-to-text model")
    max_new_tokens: int = Field(default=160, ge=1, le=2048)
    revision: str | None = Field(
        default=None, description="commit of the weights; unset: the sha256 of the directory's files"
    )
    max_images: int = Field(
        default=1,
        ge=1,
        le=32,
        description="most suspicious crops or frames shown per prompt; 1 for models trained on one image",
    )
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="auto: float16 on CUDA, float32 on CPU"
    )
