"""`lvlm_http`: an OpenAI-compatible chat-completions endpoint with image input.

This module holds the configuration only, so that `worker.settings` can import it: the explainer class
needs `worker.explain.base`, which imports `worker.settings` (through `worker.aggregate` and `worker.media`),
so it lives in `worker.explain.chat_completions`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class LvlmHttpConfig(BaseModel):
    base_url: str | None = Field(default=None, description="e.g. http://lvlm:8000/v1 (vLLM, TGI, Ollama)")
    model: str | None = Field(default=None, description="model name the server knows")
    api_key: SecretStr | None = Field(default=None, description="sent as a Bearer token")
    timeout_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    backoff_s: float = Field(default=1.0, ge=0)
    max_tokens: int = Field(default=160, ge=1, le=4096)
    max_backoff_s: float = Field(
        default=30.0, ge=0, description="cap on one wait between attempts, Retry-After included"
    )
    max_images: int = Field(
        default=1,
        ge=1,
        le=32,
        description="most suspicious crops or frames sent per request; many servers accept one image",
    )
    max_image_side: int = Field(default=1024, ge=32, le=8192, description="larger images are downscaled")
    jpeg_quality: int = Field(default=90, ge=1, le=100)
