"""dfwnet: the project's own compact face-crop CNN, trained here and shipped with the package.

Small enough for CPU serving (0.16 M parameters, under 1 MB of float32 weights, 96 x 96 input):
eight 3x3 convolutions with batch norm and ReLU, four of them with stride 2, global average pooling, dropout
and one linear output (the log-odds that the crop is fake). Every parameter is trained by `dfw train dfwnet`
(there is no frozen backbone), on face crops of labelled media plus self-blended pseudo-fakes made from the
real crops (worker.sbi), with re-compression, resizing and blur on both classes (worker.training).

Weights are a safetensors file (no pickle: loading them runs no code). The shipped `dfwnet-v1.safetensors`
lives in `worker/weights/` and is found by the model store like any cached file (sha256 in its manifest).
The README records the recipe that made it and what it measured on held-out sources.

The network sees the central 96 px of a 120 px face crop, about the face box itself. The crop's outer ring is
often outside the photo (tightly cropped portraits such as UTKFace's), where the crop repeats the edge pixels;
in the dev set that happens mostly to real images, and a network that saw the ring would learn "streaked
border = real" (it did, in a first run on full crops). Training also simulates such borders on both classes.
The input is small so that nearly every source's faces are downscaled and resolution says less about the
source; it did not remove the "sharp studio portrait = generated" shortcut on its own (held-out press photos
called fake at 0.5: 63 % at 128 px, 65 % at 96 px; 51 % once half of them trained; 11 % at the shipped
calibrated threshold). README, "The project's own detectors", has the measurements.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field

from worker.detectors.whole_network import WholeNetworkDetector

if TYPE_CHECKING:
    import torch


INPUT_SIZE = 120  # the face crop the pipeline makes (side = face box x crop margin, 1.3 by default)
VIEW = 96  # the centred square the network sees: about the face box itself
# (output channels, stride) of the convolutions; each is 3x3 -> BatchNorm -> ReLU
LAYERS: tuple[tuple[int, int], ...] = (
    (16, 1),
    (24, 2),
    (24, 1),
    (48, 2),
    (48, 1),
    (64, 2),
    (64, 1),
    (96, 2),
)
DROPOUT = 0.2
MEAN, STD = 0.5, 0.25  # pixel normalisation: (x / 255 - MEAN) / STD


class DfwnetConfig(BaseModel):
    weights: str = Field(
        default="dfwnet-v1.safetensors",
        description="model-store name or path of the safetensors weights (dfw train dfwnet writes them)",
    )


def build_network() -> torch.nn.Sequential:
    from torch import nn

    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = 3
    for index, (out, stride) in enumerate(LAYERS, start=1):
        layers[f"conv{index}"] = nn.Conv2d(channels, out, 3, stride=stride, padding=1, bias=False)
        layers[f"bn{index}"] = nn.BatchNorm2d(out)
        layers[f"relu{index}"] = nn.ReLU(inplace=True)
        channels = out
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["dropout"] = nn.Dropout(DROPOUT)
    layers["fc"] = nn.Linear(channels, 1)
    return nn.Sequential(layers)


class DfwnetDetector(WholeNetworkDetector):
    name = "dfwnet"
    looks_at = "face"
    input_size = INPUT_SIZE
    code_version = "1"
    # What `dfw train dfwnet` uses unless told otherwise: the recipe of the shipped weights (README).
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 20,
        "lr": 2e-3,
        "batch_size": 32,
        "sbi": 0.5,
        "augment": "strong",
        "weight_decay": 1e-4,
        "schedule": "cosine",
        "threads": 1,
        "frames_per_video": 64,  # training videos only: more face-swap frames (the service samples 16)
    }

    @property
    def dfwnet_config(self) -> DfwnetConfig:
        if not isinstance(self.config, DfwnetConfig):
            raise TypeError(f"dfwnet needs a DfwnetConfig, got {type(self.config).__name__}")
        return self.config

    def weights_name(self) -> str:
        return self.dfwnet_config.weights

    def build_network(self) -> torch.nn.Sequential:
        return build_network()

    def init_adapter(self, seed: int) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.use_network(build_network())

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        import torch

        margin = (INPUT_SIZE - VIEW) // 2
        view = batch[:, margin : margin + VIEW, margin : margin + VIEW]
        pixels = torch.from_numpy(np.ascontiguousarray(view, np.uint8)).to(self.device)
        return (pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0 - MEAN) / STD

    def fake_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.network(inputs).reshape(-1)
        return logits


DETECTOR = DfwnetDetector
