"""What a vision-language model is shown: the evidence images and the question with a summary of the scores.

Injection safety: the summary is built only from numbers and fixed words (detector registry keys, "face",
"frame"), never from text found in the media, its metadata or its file name. The images themselves may
carry text; whatever the model answers is stored as data and never changes the verdict.

Images: the `max_images` most suspicious evidence items that carry pixels (highest score first; ties keep
the caller's order), at least one when there is any. Models trained on one image per prompt (LLaVA-1.5,
InstructBLIP, BLIP-2) get the single most suspicious crop or frame.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from worker.explain.base import SEED_QUESTION, Evidence
from worker.explain.evidence import format_score, format_time

if TYPE_CHECKING:
    from worker.aggregate import Verdict
    from worker.media import MediaInfo

DETECTOR_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")  # registry keys only: anything else is left out
NO_EVIDENCE_TEXT = "No face or frame was available to show the language model."


def images_to_show(evidence: Sequence[Evidence], limit: int) -> list[Evidence]:
    """The `limit` highest-scoring items that carry pixels, highest first (ties keep the caller's order)."""
    with_pixels = [item for item in evidence if item.image.size > 0]
    return sorted(with_pixels, key=lambda e: -e.score)[: max(limit, 1)]


def evidence_summary(media: MediaInfo, verdict: Verdict, shown: Sequence[Evidence]) -> str:
    """Scores only: the verdict's score and threshold, each detector's score, and what each image is."""
    scores = []
    if verdict.score is not None:
        scores.append(f"overall {format_score(verdict.score)} (threshold {format_score(verdict.threshold)})")
    scores.extend(
        f"{name} {format_score(value)}"
        for name, value in sorted(verdict.detectors.items())
        if DETECTOR_NAME.match(name)
    )
    lines = [
        "Deepfake detector scores, from 0 (natural) to 1 (computer generated): "
        + (", ".join(scores) if scores else "none")
        + "."
    ]
    for number, item in enumerate(shown, start=1):
        what = "a face crop" if item.kind == "face" else "a whole frame"
        when = f" at {format_time(item.timestamp_s)}" if media.kind == "video" else ""
        lines.append(f"Image {number}: {what}{when}, score {format_score(item.score)}.")
    return "\n".join(lines)


def build_question(media: MediaInfo, verdict: Verdict, shown: Sequence[Evidence]) -> str:
    """The summary, then the seed question last (models answer the last thing they are asked)."""
    return f"{evidence_summary(media, verdict, shown)}\n{SEED_QUESTION}"


def evidence_image(item: Evidence) -> Image.Image:
    """The evidence array as an RGB PIL image (uint8, H x W x 3)."""
    array = np.ascontiguousarray(item.image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"evidence image must be (H, W, 3) uint8 RGB, got {array.shape} {array.dtype}")
    return Image.fromarray(array)
