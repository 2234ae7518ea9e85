"""MesoNet Meso4 on 256x256 face crops.

Afchar, Nozick, Yamagishi, Echizen, "MesoNet: a Compact Facial Video Forgery Detection Network",
IEEE WIFS 2018 (arXiv:1809.00888). The public weights (github.com/DariusAf/MesoNet) are Keras 2
weight-only .h5 files; this module rebuilds the network in torch and converts them:

    input 256x256x3 in [0, 1]
    4 x [conv (8 3x3, 8 5x5, 16 5x5, 16 5x5; 'same') -> ReLU -> BatchNorm (eps 1e-3) -> max-pool (2, 2, 2, 4)]
    flatten -> dropout -> dense 16 -> LeakyReLU(0.1) -> dropout -> dense 1 -> sigmoid = P(real)

Keras stores conv kernels HWIO and dense kernels (in, out), and flattens NHWC; torch wants OIHW,
(out, in) and flattens NCHW, so the first dense kernel's rows are reordered from (h, w, c) to (c, h, w).
Layer numbers differ between the files (max_pooling2d_5 in one, _4 in the other), so layers are
matched by kind and order, never by name.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel

from worker.detectors.base import Detector, half_precision
from worker.models import ModelStore

if TYPE_CHECKING:
    import h5py
    import torch

logger = logging.getLogger(__name__)

# (filters, kernel size, pool size) of the four convolution blocks
BLOCKS: tuple[tuple[int, int, int], ...] = ((8, 3, 2), (8, 5, 2), (16, 5, 2), (16, 5, 4))
FLAT_HWC = (8, 8, 16)  # feature map after the last pool: 256 / (2 * 2 * 2 * 4) = 8
HIDDEN = 16
BN_EPS = 1e-3
LEAK = 0.1
CPU_MAX_BATCH = 4  # measured: per-item cost doubles above 4 on CPU (activations leave the cache)


class Meso4Config(BaseModel):
    weights: Literal["Meso4_DF.h5", "Meso4_F2F.h5"] = "Meso4_DF.h5"


def build_network() -> torch.nn.Sequential:
    """The Meso4 graph with torch's default initialisation (weights are loaded separately)."""
    from torch import nn

    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = 3
    for index, (filters, kernel, pool) in enumerate(BLOCKS, start=1):
        layers[f"conv{index}"] = nn.Conv2d(channels, filters, kernel, padding=kernel // 2)
        layers[f"relu{index}"] = nn.ReLU()
        layers[f"bn{index}"] = nn.BatchNorm2d(filters, eps=BN_EPS)
        layers[f"pool{index}"] = nn.MaxPool2d(pool, stride=pool)
        channels = filters
    layers["flatten"] = nn.Flatten()
    layers["drop1"] = nn.Dropout(0.5)
    layers["dense1"] = nn.Linear(int(np.prod(FLAT_HWC)), HIDDEN)
    layers["leaky"] = nn.LeakyReLU(LEAK)
    layers["drop2"] = nn.Dropout(0.5)
    layers["dense2"] = nn.Linear(HIDDEN, 1)
    layers["sigmoid"] = nn.Sigmoid()
    return nn.Sequential(layers)


def read_keras_layers(path: Path) -> dict[str, list[list[np.ndarray]]]:
    """Weighted layers of a Keras 2 .h5 by kind ('conv2d', 'batch_normalization', 'dense'), in model order.

    Each layer is its list of arrays in Keras' own order (kernel, bias / gamma, beta, mean, variance).
    """
    import h5py

    kinds: dict[str, list[list[np.ndarray]]] = {"conv2d": [], "batch_normalization": [], "dense": []}
    with h5py.File(path, "r") as handle:
        root: h5py.Group = handle.get("model_weights", handle)  # full-model saves nest the weights
        for raw in root.attrs["layer_names"]:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            kind = name.rsplit("_", 1)[0]
            if kind in kinds:
                kinds[kind].append(read_layer_arrays(root[name]))
    return kinds


def read_layer_arrays(group: h5py.Group) -> list[np.ndarray]:
    names = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in group.attrs["weight_names"]]
    return [np.asarray(group[name], np.float32) for name in names]


def convert_state_dict(kinds: dict[str, list[list[np.ndarray]]]) -> dict[str, np.ndarray]:
    """Keras arrays -> a numpy state dict for `build_network()`, in torch layouts."""
    counts = {kind: len(layers) for kind, layers in kinds.items()}
    if counts != {"conv2d": len(BLOCKS), "batch_normalization": len(BLOCKS), "dense": 2}:
        raise ValueError(f"not a Meso4 weight file: weighted layers {counts}")
    state: dict[str, np.ndarray] = {}
    for index, (conv, bn) in enumerate(zip(kinds["conv2d"], kinds["batch_normalization"], strict=True), 1):
        state.update(convert_block(index, conv, bn))
    state.update(convert_head(kinds["dense"]))
    return state


def convert_block(index: int, conv: list[np.ndarray], bn: list[np.ndarray]) -> dict[str, np.ndarray]:
    kernel, bias = conv
    gamma, beta, mean, variance = bn
    return {
        f"conv{index}.weight": kernel.transpose(3, 2, 0, 1),  # HWIO -> OIHW
        f"conv{index}.bias": bias,
        f"bn{index}.weight": gamma,
        f"bn{index}.bias": beta,
        f"bn{index}.running_mean": mean,
        f"bn{index}.running_var": variance,
        f"bn{index}.num_batches_tracked": np.zeros((), np.int64),
    }


def convert_head(dense: list[list[np.ndarray]]) -> dict[str, np.ndarray]:
    (kernel1, bias1), (kernel2, bias2) = dense
    # rows of kernel1 follow Keras' NHWC flatten order (h, w, c); torch's Flatten yields (c, h, w)
    chw = kernel1.reshape(*FLAT_HWC, -1).transpose(2, 0, 1, 3).reshape(kernel1.shape)
    return {"dense1.weight": chw.T, "dense1.bias": bias1, "dense2.weight": kernel2.T, "dense2.bias": bias2}


class Meso4Detector(Detector):
    """Meso4 fake probability: 1 - P(real) from the sigmoid output of the published network."""

    name = "meso4"
    looks_at = "face"
    input_size = 256
    code_version = "1"

    def __init__(self, config: BaseModel, store: ModelStore, device: str = "cpu") -> None:
        super().__init__(config, store, device)
        self._network: torch.nn.Module | None = None

    @property
    def meso_config(self) -> Meso4Config:
        if not isinstance(self.config, Meso4Config):
            raise TypeError(f"meso4 needs a Meso4Config, got {type(self.config).__name__}")
        return self.config

    def weight_names(self) -> list[str]:
        return [self.meso_config.weights]

    def _load(self) -> None:
        import torch

        path = self.store.path(self.meso_config.weights)  # raises ModelUnavailable
        state = convert_state_dict(read_keras_layers(path))
        network = build_network()
        network.load_state_dict({key: torch.from_numpy(np.ascontiguousarray(v)) for key, v in state.items()})
        self._network = network.eval().to(self.device)
        self.max_batch = CPU_MAX_BATCH if self.device == "cpu" else None
        logger.info("meso4 loaded %s on %s", path.name, self.device)

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if self._network is None:
            raise RuntimeError("meso4 network not loaded")
        pixels = torch.from_numpy(np.ascontiguousarray(batch, np.uint8))
        with torch.inference_mode(), half_precision(self.device):
            inputs = pixels.to(self.device).permute(0, 3, 1, 2).to(torch.float32) / 255.0
            p_real = self._network(inputs).reshape(-1)
            return (1.0 - p_real).cpu().numpy()


DETECTOR = Meso4Detector
