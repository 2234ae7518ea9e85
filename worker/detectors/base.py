"""The detector contract.

A detector is one module in `worker/detectors/` with one config class and one registry key. `load()` runs
once per process on a declared device (idempotent, ends with a warm-up pass) and is the only place that
imports torch or other heavy libraries. `predict(batch)` takes RGB uint8 crops of `input_size` x
`input_size` (faces for `looks_at == "face"`, whole frames resized for `"frame"`) and returns, per item,
the probability that it is fake, in [0, 1].
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel

from worker.models import ModelStore


@dataclass(frozen=True)
class DetectorLineage:
    """What is stored with every score so a backfill can tell what changed."""

    name: str
    version: str
    weights: dict[str, str] = field(default_factory=dict)  # model-store name -> sha256
    config: dict[str, Any] = field(default_factory=dict)


class Detector(ABC):
    name: ClassVar[str]
    looks_at: ClassVar[Literal["face", "frame"]]
    input_size: ClassVar[int]
    code_version: ClassVar[str]  # bump when preprocessing or the network changes

    def __init__(self, config: BaseModel, store: ModelStore, device: str = "cpu") -> None:
        self.config = config
        self.store = store
        self.device = device
        self.loaded = False

    @abstractmethod
    def weight_names(self) -> list[str]:
        """Model-store names of every file `load()` needs."""

    @abstractmethod
    def _load(self) -> None:
        """Import heavy libraries, read weights, move to device."""

    @abstractmethod
    def _predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB -> (N,) float fake probabilities."""

    def load(self) -> None:
        if self.loaded:
            return
        self._load()
        self.loaded = True
        self.predict([np.zeros((self.input_size, self.input_size, 3), np.uint8)])  # warm-up

    def predict(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        if not self.loaded:
            raise RuntimeError(f"detector {self.name} used before load()")
        if len(batch) == 0:
            return np.zeros((0,), np.float64)
        stacked = np.stack([np.asarray(item, np.uint8) for item in batch])
        expected = (self.input_size, self.input_size, 3)
        if stacked.shape[1:] != expected:
            raise ValueError(f"{self.name} expects items of shape {expected}, got {stacked.shape[1:]}")
        scores = np.asarray(self._predict(stacked), np.float64).reshape(-1)
        return np.clip(scores, 0.0, 1.0)

    def lineage(self) -> DetectorLineage:
        weights = {name: self.store.entry(name).sha256 for name in self.weight_names()}
        return DetectorLineage(
            name=self.name,
            version=f"{self.name}/{self.code_version}",
            weights=weights,
            config=self.config.model_dump(mode="json"),
        )
