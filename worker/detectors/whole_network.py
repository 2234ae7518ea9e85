"""Detectors whose trainable adapter is their whole small network, stored as one safetensors file.

The project's own detectors (dfwnet, trained from scratch; dfwmeso, fine-tuned from MesoNet) share this:
no frozen backbone, every parameter trained by `dfw train`, weights in safetensors (loading them runs no
code), written so that a fixed seed reproduces the file byte for byte.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from worker.detectors.base import TrainableDetector
from worker.errors import ModelUnavailable
from worker.models import ModelStore

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


class WholeNetworkDetector(TrainableDetector):
    adapter_field = "weights"
    adapter_suffix = ".safetensors"

    def __init__(self, config: BaseModel, store: ModelStore, device: str = "cpu") -> None:
        super().__init__(config, store, device)
        self._network: torch.nn.Sequential | None = None

    @abstractmethod
    def weights_name(self) -> str:
        """Model-store name or path of the weights file (the config's `weights`)."""

    @abstractmethod
    def build_network(self) -> torch.nn.Sequential:
        """The detector's graph with fresh parameters."""

    @property
    def network(self) -> torch.nn.Sequential:
        if self._network is None:
            raise RuntimeError(f"{self.name} network not built")
        return self._network

    def use_network(self, network: torch.nn.Sequential) -> None:
        """Serve (and train) this network on the detector's device."""
        self._network = network.eval().to(self.device)

    def weight_names(self) -> list[str]:
        return [self.weights_name()]

    def _load(self) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        name = self.weights_name()
        path = self.store.resolve(name)  # raises ModelUnavailable
        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelUnavailable(name, f"not a {self.name} weight file: {exc}") from exc
        network = self.build_network()
        try:
            network.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelUnavailable(name, f"weights do not fit {self.name}: {exc}") from exc
        self.use_network(network)
        logger.info("%s loaded %s on %s", self.name, path.name, self.device)

    def _load_backbone(self) -> None:
        """No frozen part: the whole network is what training changes."""

    def adapter_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.network.parameters())

    def set_training(self, training: bool) -> None:
        self.network.train(training)

    def save_adapter(self, path: Path) -> None:
        from safetensors.torch import save_file

        state = {key: value.detach().cpu().contiguous() for key, value in self.network.state_dict().items()}
        # one metadata entry only: safetensors writes several in a random order (measured: the same tensors
        # gave two different files), and a fixed seed must reproduce the file byte for byte
        save_file(state, str(path), metadata={"format": f"{self.name}/{self.code_version}"})
