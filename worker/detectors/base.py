"""The detector contract.

A detector is one module in `worker/detectors/` with one config class and one registry key. `load()` runs
once per process on a declared device (idempotent, ends with a warm-up pass) and is the only place that
imports torch or other heavy libraries. `predict(batch)` takes RGB uint8 crops of `input_size` x
`input_size` (faces for `looks_at == "face"`, whole frames resized for `"frame"`) and returns, per item,
the probability that it is fake, in [0, 1].
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel

from worker.models import ModelStore

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DetectorLineage:
    """What is stored with every score so a backfill can tell what changed."""

    name: str
    version: str
    weights: dict[str, str] = field(default_factory=dict)  # model-store name -> sha256
    config: dict[str, Any] = field(default_factory=dict)


def half_precision(device: str) -> AbstractContextManager[Any]:
    """Float16 autocast for inference on CUDA (weights stay float32; matmuls and convolutions run in half
    precision, reductions in float32); nothing on CPU, where half precision is slower."""
    if not device.startswith("cuda"):
        return nullcontext()
    import torch

    return torch.autocast("cuda", dtype=torch.float16)


def weights_digest(weights: dict[str, str]) -> str:
    """8 hex characters identifying a set of weight files by their sha256s."""
    text = "|".join(f"{name}={sha}" for name, sha in sorted(weights.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


class Detector(ABC):
    name: ClassVar[str]
    code_version: ClassVar[str]  # bump when preprocessing or the network changes
    # What the detector looks at and its square input side. Class defaults; a detector whose config decides
    # them (e.g. hf_classifier) sets them in __init__, never later: the pipeline reads them before load().
    looks_at: Literal["face", "frame"] = "face"
    input_size: int = 224
    # Largest batch one forward pass takes; None = whatever the caller sends. Set where measured: on CPU,
    # MesoNet's full-resolution activations fall out of cache above a few items (bench/detectors.py).
    max_batch: int | None = None

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
        step = self.max_batch or len(stacked)
        parts = [self._predict(stacked[start : start + step]) for start in range(0, len(stacked), step)]
        scores = np.concatenate([np.asarray(p, np.float64).reshape(-1) for p in parts])
        return np.clip(scores, 0.0, 1.0)

    def lineage(self) -> DetectorLineage:
        """Name, version and weights. The version names the weights too (`meso4/1@036ed30d`): a detector
        on a test backbone or a retrained adapter never shares a version string with another."""
        weights = {name: self.store.sha256_of(name) for name in self.weight_names()}
        return DetectorLineage(
            name=self.name,
            version=f"{self.name}/{self.code_version}@{weights_digest(weights)}",
            weights=weights,
            config=self.config.model_dump(mode="json"),
        )


class TrainableDetector(Detector):
    """A detector with a small adapter that `dfw train` tunes on a frozen backbone.

    `_predict` must equal `sigmoid(fake_logits(preprocess(batch)))`; training feeds augmented uint8 crops
    through `preprocess` and optimises only `adapter_parameters()` (the backbone stays frozen, its tensors
    unchanged). `save_adapter` writes a file in the format `_load` reads for the detector's adapter weights.
    """

    adapter_field: ClassVar[str] = "weights"  # the config field naming the adapter file, e.g. "head"
    adapter_suffix: ClassVar[str] = ".pt"  # file name suffix of what save_adapter writes
    # Options of `dfw train` this detector's recipe sets when the operator does not (epochs, lr, sbi, ...)
    training_defaults: ClassVar[dict[str, Any]] = {}
    pos_weight: Any = None  # tensor set by the trainer: weight of the fake class in the default loss

    @abstractmethod
    def _load_backbone(self) -> None:
        """Load the frozen backbone only (no adapter weights): what training from scratch starts from."""

    def load_for_training(self, seed: int) -> None:
        """Backbone loaded, adapter freshly initialised: ready for `dfw train`."""
        self._load_backbone()
        self.init_adapter(seed)
        self.loaded = True

    def set_training(self, training: bool) -> None:
        """Switch what training changes between training and inference behaviour (batch norm, dropout).
        Adapters on frozen backbones have neither: nothing to do by default."""

    @abstractmethod
    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        """(N, S, S, 3) uint8 RGB -> the model's input tensor on the detector's device."""

    @abstractmethod
    def fake_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Differentiable (N,) log-odds that each input is fake."""

    def training_loss(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss `dfw train` minimises (labels: 1 fake, 0 real). Default: binary cross-entropy on the
        fake log-odds, classes weighted by `pos_weight` set by the trainer. A detector whose paper trains
        with another objective (e.g. a language-modelling loss on answer tokens) overrides this."""
        import torch

        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=self.pos_weight)
        loss: torch.Tensor = loss_fn(self.fake_logits(inputs).float(), labels)
        return loss

    @abstractmethod
    def adapter_parameters(self) -> list[torch.nn.Parameter]:
        """The only tensors training may change."""

    @abstractmethod
    def init_adapter(self, seed: int) -> None:
        """Fresh adapter parameters for training from scratch (the backbone is loaded, the adapter is not)."""

    @abstractmethod
    def save_adapter(self, path: Path) -> None:
        """Write the adapter in the format `_load` reads."""

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode(), half_precision(self.device):
            logits = self.fake_logits(self.preprocess(batch))
            return torch.sigmoid(logits.float()).cpu().numpy()
