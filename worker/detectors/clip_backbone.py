"""A frozen CLIP backbone through open_clip, shared by the CLIP-based detectors.

Weights are a model-store name or an operator's local file: OpenAI's TorchScript archive (`ViT-L-14.pt`),
an open_clip state dict (`.bin`, `.pt`) or a `.safetensors` file. The architecture comes from open_clip's
registry (`ViT-L-14-quickgelu` is OpenAI's ViT-L/14) or from a JSON config file registered at load, which
is how the tests build tiny random backbones.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from worker.models import ModelStore

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_IMAGE_SIZE = 224
OPENAI_ARCHIVE_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


class ClipBackboneConfig(BaseModel):
    model: str = Field(default="ViT-L-14-quickgelu", description="open_clip architecture name")
    weights: str = Field(default="ViT-L-14.pt", description="model-store name or local path of the weights")
    model_config_path: str | None = Field(
        default=None, description="JSON file defining a custom open_clip architecture named like the file"
    )


@dataclass
class ClipBackbone:
    model: Any  # open_clip.model.CLIP, frozen, eval mode
    tokenizer: Any
    image_size: int
    device: str
    mean: Any  # (1, 3, 1, 1) tensors on device
    std: Any

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        """(N, S, S, 3) uint8 RGB at the backbone's image size -> normalised (N, 3, S, S) float on device."""
        import torch

        pixels = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        pixels = pixels.permute(0, 3, 1, 2).float().div_(255.0)
        normalised: torch.Tensor = (pixels - self.mean) / self.std
        return normalised

    def parameters_snapshot(self) -> dict[str, torch.Tensor]:
        """Copies of every backbone tensor, to prove training left them unchanged."""
        return {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()}


def open_clip_config_path(config: ClipBackboneConfig) -> Path | None:
    """The JSON file describing the backbone's architecture, found without importing open_clip."""
    if config.model_config_path:
        path = Path(config.model_config_path).expanduser()
        return path / f"{config.model}.json" if path.is_dir() else path
    spec = importlib.util.find_spec("open_clip")  # locates the package, does not execute it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model_configs" / f"{config.model}.json"


def declared_image_size(config: ClipBackboneConfig) -> int:
    """The backbone's square input side, known before load() (the pipeline reads `input_size` first)."""
    path = open_clip_config_path(config)
    if path is None or not path.is_file():
        return DEFAULT_IMAGE_SIZE
    size = json.loads(path.read_text()).get("vision_cfg", {}).get("image_size", DEFAULT_IMAGE_SIZE)
    return int(size[0] if isinstance(size, list | tuple) else size)


def check_image_size(detector: str, backbone: ClipBackbone, declared: int) -> None:
    if backbone.image_size != declared:
        raise ValueError(
            f"{detector}: the loaded CLIP backbone takes {backbone.image_size}px images but its config "
            f"declared {declared}px"
        )


def image_embed_dim(backbone: ClipBackbone) -> int:
    """Width of `encode_image` features (the joint embedding: 768 for ViT-L/14)."""
    dim = getattr(backbone.model.visual, "output_dim", None)
    if not isinstance(dim, int):
        raise ValueError("the CLIP image tower does not declare its output width (visual.output_dim)")
    return dim


def read_clip_state(path: Path) -> dict[str, Any]:
    """A CLIP state dict from an OpenAI TorchScript archive, a torch checkpoint or a safetensors file."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    if zipfile.is_zipfile(path) and any(
        n.endswith("constants.pkl") for n in zipfile.ZipFile(path).namelist()
    ):
        archive = torch.jit.load(str(path), map_location="cpu")
        state = dict(archive.state_dict())
        for key in OPENAI_ARCHIVE_EXTRA_KEYS:
            state.pop(key, None)
        return state
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {key.removeprefix("module."): value for key, value in state.items()}


def load_clip(config: ClipBackboneConfig, store: ModelStore, device: str) -> ClipBackbone:
    """Build the architecture, load the weights strictly, freeze everything. Raises ModelUnavailable."""
    import open_clip
    import torch

    path = store.resolve(config.weights)
    if config.model_config_path:
        open_clip.add_model_config(Path(config.model_config_path))
    model = open_clip.create_model(config.model, pretrained=None, load_weights=False, device="cpu")
    model.load_state_dict(read_clip_state(path), strict=True)
    model.requires_grad_(False)
    model.eval().to(device)
    size = model.visual.image_size
    image_size = int(size[0] if isinstance(size, tuple | list) else size)
    mean = torch.tensor(OPENAI_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=device).view(1, 3, 1, 1)
    logger.info("CLIP %s loaded from %s on %s", config.model, path, device)
    return ClipBackbone(model, open_clip.get_tokenizer(config.model), image_size, device, mean, std)
