"""UnivFD: a linear probe on frozen CLIP ViT-L/14 image features.

Ojha, Li, Lee, "Towards Universal Fake Image Detectors that Generalize Across Generative Models",
CVPR 2023 (arXiv:2302.10174). The published detector is one `nn.Linear(768, 1)` on CLIP image features;
its output is the fake logit and `sigmoid` of it the fake probability.

Features are *not* L2-normalised before the linear layer. In the official code
(github.com/WisconsinAIVision/UniversalFakeDetect, `models/clip_models.py`) `CLIPModel.forward` returns
`self.fc(self.model.encode_image(x))`, and their bundled OpenAI CLIP's `encode_image` is
`self.visual(image)`: the projected 768-d embedding, with normalisation only inside `CLIP.forward`, which
UnivFD never calls. `validate.py` loads `fc_weights.pth` with `model.fc.load_state_dict` and scores with
`model(x).sigmoid()`; `networks/trainer.py` initialises the head's weight with N(0, 0.02) (`init_gain`)
and trains it with BCE-with-logits and AdamW. Here `open_clip`'s `encode_image(x)` (normalize=False) gives
the same projected, unnormalised features.

The adapter file is the public format: a state dict with `weight` (1, embed_dim) and `bias` (1,);
`save_adapter` writes the same, so a head trained by `dfw train` loads through `config.head`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from worker.detectors.base import TrainableDetector
from worker.detectors.clip_backbone import (
    ClipBackbone,
    ClipBackboneConfig,
    check_image_size,
    declared_image_size,
    image_embed_dim,
)
from worker.models import ModelStore

if TYPE_CHECKING:
    import numpy as np
    import torch

logger = logging.getLogger(__name__)

HEAD_INIT_STD = 0.02  # UnivFD's --init_gain for the head's weight


class ClipLinearConfig(BaseModel):
    backbone: ClipBackboneConfig = Field(default_factory=ClipBackboneConfig)
    head: str = Field(default="univfd_fc_weights.pth", description="linear head: model-store name or path")
    looks_at: Literal["face", "frame"] = "frame"


def read_head_state(path: Path) -> dict[str, torch.Tensor]:
    """`weight` and `bias` of a saved linear head (the UnivFD file, or the same keys under `fc.`)."""
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"linear head {path.name}: expected a state dict, got {type(state).__name__}")
    for prefix in ("", "fc.", "module.fc."):
        if f"{prefix}weight" in state and f"{prefix}bias" in state:
            return {"weight": state[f"{prefix}weight"], "bias": state[f"{prefix}bias"]}
    raise ValueError(f"linear head {path.name}: no 'weight' and 'bias' tensors (keys: {sorted(state)[:8]})")


def build_head(state: dict[str, torch.Tensor], embed_dim: int, source: str = "head") -> torch.nn.Linear:
    """A float32 `nn.Linear(embed_dim, 1)` holding `state`; a clear ValueError when the shapes differ."""
    import torch

    weight, bias = state["weight"], state["bias"]
    if tuple(weight.shape) != (1, embed_dim) or tuple(bias.shape) != (1,):
        raise ValueError(
            f"linear head {source} has weight {tuple(weight.shape)} and bias {tuple(bias.shape)}, but the "
            f"CLIP backbone's image features need weight (1, {embed_dim}) and bias (1,)"
        )
    head = torch.nn.Linear(embed_dim, 1)
    with torch.no_grad():
        head.weight.copy_(weight.float())
        head.bias.copy_(bias.float())
    return head


def load_head(path: Path, embed_dim: int) -> torch.nn.Linear:
    """Read and shape-check a linear head file for features of width `embed_dim`."""
    return build_head(read_head_state(path), embed_dim, path.name)


class ClipLinearDetector(TrainableDetector):
    """Fake probability = sigmoid(fc(CLIP.encode_image(x))), the UnivFD linear probe."""

    name = "clip_linear"
    code_version = "1"
    adapter_field = "head"

    def __init__(self, config: BaseModel, store: ModelStore, device: str = "cpu") -> None:
        super().__init__(config, store, device)
        self.looks_at = self.linear_config.looks_at
        self.input_size = declared_image_size(self.linear_config.backbone)
        self._backbone: ClipBackbone | None = None
        self._head: torch.nn.Linear | None = None

    @property
    def linear_config(self) -> ClipLinearConfig:
        if not isinstance(self.config, ClipLinearConfig):
            raise TypeError(f"clip_linear needs a ClipLinearConfig, got {type(self.config).__name__}")
        return self.config

    @property
    def backbone(self) -> ClipBackbone:
        if self._backbone is None:
            raise RuntimeError("clip_linear backbone not loaded")
        return self._backbone

    def weight_names(self) -> list[str]:
        return [self.linear_config.backbone.weights, self.linear_config.head]

    def _load_backbone(self) -> None:
        """Load the frozen CLIP once (idempotent); `_load` and training from scratch both start here."""
        if self._backbone is None:
            from worker.detectors.clip_backbone import load_clip

            backbone = load_clip(self.linear_config.backbone, self.store, self.device)
            check_image_size(self.name, backbone, self.input_size)
            self._backbone = backbone

    def _load(self) -> None:
        path = self.store.resolve(self.linear_config.head)  # raises ModelUnavailable
        self._load_backbone()
        self._head = load_head(path, image_embed_dim(self.backbone)).to(self.device)
        logger.info("clip_linear head %s loaded on %s", path.name, self.device)

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        return self.backbone.preprocess(batch)

    def fake_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Differentiable in the head only: the frozen backbone runs without building a graph."""
        import torch

        head = self._require_head()
        with torch.no_grad():
            features = self.backbone.model.encode_image(inputs)
        logits: torch.Tensor = head(features.to(head.weight.dtype))
        return logits.reshape(-1)

    def _require_head(self) -> torch.nn.Linear:
        if self._head is None:
            raise RuntimeError("clip_linear head not loaded: call load() or load_for_training()")
        return self._head

    def adapter_parameters(self) -> list[torch.nn.Parameter]:
        return list(self._require_head().parameters())  # weight, bias

    def init_adapter(self, seed: int) -> None:
        """A fresh head on the loaded backbone: weight ~ N(0, 0.02), bias 0 (as UnivFD's trainer)."""
        import torch

        self._load_backbone()  # no-op after load_for_training()
        dim = image_embed_dim(self.backbone)
        generator = torch.Generator().manual_seed(seed)
        state = {"weight": torch.randn(1, dim, generator=generator) * HEAD_INIT_STD, "bias": torch.zeros(1)}
        self._head = build_head(state, dim, "init").to(self.device)

    def save_adapter(self, path: Path) -> None:
        import torch

        head = self._require_head()
        state = {"weight": head.weight.detach().cpu().clone(), "bias": head.bias.detach().cpu().clone()}
        torch.save(state, str(path))


DETECTOR = ClipLinearDetector
