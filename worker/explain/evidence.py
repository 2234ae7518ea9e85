"""The built-in `evidence` explainer (placeholder: being written)."""

from __future__ import annotations

from pydantic import BaseModel


class EvidenceConfig(BaseModel):
    pass
