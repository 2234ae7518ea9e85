"""AntifakePrompt-style VQA detector on InstructBLIP (placeholder: being written)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class VqaPromptConfig(BaseModel):
    model: str | None = Field(default=None, description="local directory of an InstructBLIP checkpoint")
    prompt: str = Field(default="vqa_prompt_pseudoword.pt", description="learned pseudo-word: name or path")
