"""Device choice. Torch is imported only when the setting asks about CUDA."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def choose_device(setting: str) -> str:
    """'cpu' stays cpu; 'auto' means cuda:0 when a GPU is visible, else cpu; 'cuda' means cuda:0."""
    if setting == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        if setting != "auto":
            logger.warning("device %s requested but CUDA is not available; using cpu", setting)
        return "cpu"
    return "cuda:0" if setting in ("auto", "cuda") else setting
