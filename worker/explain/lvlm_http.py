"""`lvlm_http`: an OpenAI-compatible chat-completions endpoint with image input (placeholder)."""

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
