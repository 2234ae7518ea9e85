"""dfwmeso: MesoNet's Meso4 network, fine-tuned by this project from the public face-swap weights.

Meso4 (Afchar et al., WIFS 2018; worker.detectors.meso4) was trained on face swaps of 2018 and ranks
modern generated faces backwards. dfwnet (worker.detectors.dfwnet), trained here from scratch, ranks
generated faces well but face swaps near chance: the dev set holds too few face-swap videos to learn them
from. dfwmeso keeps Meso4's face-swap prior and adds what the dev set teaches: `dfw train dfwmeso` starts
from the public `Meso4_DF.h5` (Apache-2.0) and fine-tunes every layer with dfwnet's recipe (self-blended
pseudo-fakes, strong augmentation on both classes, SDXL faces and the FF++ training videos of split dev-v1).
The README's "The project's own detectors" has what it measured on held-out sources.

Same graph, input (256 x 256 face crop in [0, 1]) and output convention as Meso4: the network's sigmoid is
P(real), the detector reports 1 - P(real). Weights are a safetensors file (no pickle) in the package,
found by the model store like any cached file (sha256 in its manifest).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field

from worker.detectors.meso4 import CPU_MAX_BATCH, build_network, convert_state_dict, read_keras_layers
from worker.detectors.whole_network import WholeNetworkDetector

if TYPE_CHECKING:
    import torch


class DfwmesoConfig(BaseModel):
    weights: str = Field(
        default="dfwmeso-v1.safetensors",
        description="model-store name or path of the fine-tuned weights (dfw train dfwmeso writes them)",
    )
    start_from: Literal["Meso4_DF.h5", "Meso4_F2F.h5"] = Field(
        default="Meso4_DF.h5", description="public Meso4 weights that `dfw train dfwmeso` fine-tunes"
    )


class DfwmesoDetector(WholeNetworkDetector):
    name = "dfwmeso"
    looks_at = "face"
    input_size = 256
    code_version = "1"
    # The recipe of the shipped weights (README); `dfw train dfwmeso` uses it unless told otherwise.
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 6,
        "lr": 1e-4,  # a fine-tune: dfwnet from scratch uses 2e-3
        "batch_size": 32,
        "sbi": 0.5,
        "augment": "strong",
        "weight_decay": 1e-4,
        "schedule": "cosine",
        "threads": 1,
        "frames_per_video": 64,
    }

    @property
    def dfwmeso_config(self) -> DfwmesoConfig:
        if not isinstance(self.config, DfwmesoConfig):
            raise TypeError(f"dfwmeso needs a DfwmesoConfig, got {type(self.config).__name__}")
        return self.config

    def weights_name(self) -> str:
        return self.dfwmeso_config.weights

    def build_network(self) -> torch.nn.Sequential:
        return build_network()

    def use_network(self, network: torch.nn.Sequential) -> None:
        super().use_network(network)
        self.max_batch = CPU_MAX_BATCH if self.device == "cpu" else None

    def init_adapter(self, seed: int) -> None:
        """The starting point of fine-tuning: the public Meso4 weights, exactly as meso4 loads them."""
        import torch

        path = self.store.path(self.dfwmeso_config.start_from)  # raises ModelUnavailable
        state = convert_state_dict(read_keras_layers(path))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            network = build_network()
        network.load_state_dict({key: torch.from_numpy(np.ascontiguousarray(v)) for key, v in state.items()})
        self.use_network(network)

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        import torch

        pixels = torch.from_numpy(np.ascontiguousarray(batch, np.uint8)).to(self.device)
        return pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0

    def fake_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        # the graph ends in sigmoid(P(real) log-odds): drop it and negate for the fake log-odds
        real_logits: torch.Tensor = self.network[:-1](inputs).reshape(-1)
        return -real_logits


DETECTOR = DfwmesoDetector
