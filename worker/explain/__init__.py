"""Explainers: a short text for a verdict, from the evidence itself or from a vision-language model."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    from worker.explain.base import Explainer
    from worker.settings import ExplainConfig

# registry key -> module under worker.explain that defines it as EXPLAINER (import-light: nothing is
# imported until a class is asked for; `worker.settings` imports the config modules of this package)
EXPLAINER_MODULES: dict[str, str] = {
    "evidence": "worker.explain.evidence",
    "lvlm_local": "worker.explain.image_text_model",
    "lvlm_http": "worker.explain.chat_completions",
}


class ExplainerRegistry(Mapping[str, "type[Explainer]"]):
    """Name -> explainer class; a class's module is imported the first time it is looked up."""

    def __getitem__(self, name: str) -> type[Explainer]:
        try:
            module_name = EXPLAINER_MODULES[name]
        except KeyError:
            known = ", ".join(sorted(EXPLAINER_MODULES))
            raise KeyError(f"unknown explainer {name!r}; known explainers: {known}") from None
        cls: type[Explainer] = importlib.import_module(module_name).EXPLAINER
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(EXPLAINER_MODULES)

    def __len__(self) -> int:
        return len(EXPLAINER_MODULES)


EXPLAINERS = ExplainerRegistry()


def explainer_config(settings_explain: ExplainConfig) -> BaseModel:
    """The sub-config of the chosen explainer (`evidence` has none of its own in the settings)."""
    if settings_explain.explainer == "evidence":
        from worker.explain.evidence import EvidenceConfig

        return EvidenceConfig()
    config: BaseModel = getattr(settings_explain, settings_explain.explainer)
    return config


def create_explainer(settings_explain: ExplainConfig) -> Explainer:
    """The configured explainer, not loaded yet (call `load()` once per process)."""
    return EXPLAINERS[settings_explain.explainer](explainer_config(settings_explain))


__all__ = ["EXPLAINERS", "EXPLAINER_MODULES", "create_explainer", "explainer_config"]
