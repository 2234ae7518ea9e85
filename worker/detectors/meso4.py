"""MesoNet Meso4 (placeholder: being written)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Meso4Config(BaseModel):
    weights: Literal["Meso4_DF.h5", "Meso4_F2F.h5"] = "Meso4_DF.h5"
