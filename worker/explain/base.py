"""The explainer contract.

`explain(media, verdict, evidence) -> Explanation`. An explanation is data about a verdict, never an input
to it: the verdict is decided before any explainer runs and nothing an explainer returns (nor any text
rendered inside an image) can change a label or a score. A language model's own answer is stored with
`agrees` telling whether it matches the verdict's label; a disagreement is kept and marked, not acted on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel

from worker.aggregate import Verdict
from worker.media import MediaInfo

SEED_QUESTION = "Analyze the image, is it computer generated (deepfake) or natural photo?"


@dataclass(frozen=True)
class Evidence:
    """One of the most suspicious items: a face crop or a whole frame, with what the detectors said."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    kind: Literal["face", "frame"]
    frame_index: int
    timestamp_s: float
    score: float  # the item's fake score (mean over the detectors that scored it)
    detectors: dict[str, float] = field(default_factory=dict)
    track_id: int | None = None


@dataclass(frozen=True)
class Explanation:
    explainer: str
    text: str
    model: str | None = None  # model id (e.g. a path or org/repo), None for `evidence`
    revision: str | None = None  # weights hash or commit
    prompt: str | None = None  # what was sent to a language model, None for `evidence`
    answer: Literal["fake", "real", "unclear"] | None = None  # the model's own reading of its answer
    agrees: bool | None = None  # answer vs the verdict's label; None when there is no model answer
    latency_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Explainer(ABC):
    name: ClassVar[str]
    needs_images: ClassVar[bool] = True  # False: evidence items may carry empty images (no re-decode)

    def __init__(self, config: BaseModel) -> None:
        self.config = config

    def load(self) -> None:  # noqa: B027 - optional: explainers without a model have nothing to load
        """Load models once per process; heavy imports happen here, never at module import."""

    @abstractmethod
    def explain(self, media: MediaInfo, verdict: Verdict, evidence: list[Evidence]) -> Explanation:
        """A short explanation of `verdict`. Must not raise for a model's bad output; may raise on outages."""


def agreement(answer: Literal["fake", "real", "unclear"] | None, verdict: Verdict) -> bool | None:
    """Whether a model's answer matches the verdict (fake with fake, real with real); else no opinion."""
    if answer is None or answer == "unclear" or verdict.label not in ("fake", "real"):
        return None
    return answer == verdict.label
