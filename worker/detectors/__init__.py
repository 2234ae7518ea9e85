"""Detector registry: registry key -> detector class. Modules are imported lazily by name."""

from __future__ import annotations

import importlib

from pydantic import BaseModel

from worker.detectors.base import Detector, DetectorLineage
from worker.models import ModelStore

# registry key -> module under worker.detectors that defines it (import-light: no torch at import time)
DETECTOR_MODULES: dict[str, str] = {
    "dfwnet": "worker.detectors.dfwnet",
    "dfwmeso": "worker.detectors.dfwmeso",
    "meso4": "worker.detectors.meso4",
    "clip_linear": "worker.detectors.clip_linear",
    "clip_prompt": "worker.detectors.clip_prompt",
    "clip_reprogram": "worker.detectors.clip_reprogram",
    "hf_classifier": "worker.detectors.hf_classifier",
    "vqa_prompt": "worker.detectors.vqa_prompt",
}


def detector_class(name: str) -> type[Detector]:
    try:
        module_name = DETECTOR_MODULES[name]
    except KeyError:
        known = ", ".join(sorted(DETECTOR_MODULES))
        raise KeyError(f"unknown detector {name!r}; known detectors: {known}") from None
    module = importlib.import_module(module_name)
    cls: type[Detector] = module.DETECTOR
    return cls


def create_detector(name: str, config: BaseModel, store: ModelStore, device: str = "cpu") -> Detector:
    return detector_class(name)(config, store, device)


__all__ = ["DETECTOR_MODULES", "Detector", "DetectorLineage", "create_detector", "detector_class"]
