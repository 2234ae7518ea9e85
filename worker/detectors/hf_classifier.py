"""Any transformers image-classification checkpoint (`AutoModelForImageClassification`), offline.

`config.model` is a local directory holding `config.json`, or an `org/repo` id resolved in the local HF cache
at a pinned `revision` (a 40-hex commit hash: a branch or tag moves under you, so a repo id without one is
refused). Fetching happens only when the model store allows it, and then only the `*.json` and
`*.safetensors` files of that commit. Remote code is never trusted; weights load in float32.

Decisions:

- Preprocessing. The pipeline already resizes the crop to `input_size`, so only the processor's rescale
  (`rescale_factor`) and normalisation (`image_mean`, `image_std`) are applied, as torch ops on the device.
  The numbers come from `AutoImageProcessor` (which fills in its class defaults); when the processor class
  cannot be built they are read from `preprocessor_config.json`. A checkpoint without any processor config
  is refused: whether it was trained with 0.5/0.5 (most ViT fine-tunes) or ImageNet mean/std is unknown, and
  a guess would silently shift every score. Save the processor it was trained with next to the weights.
  A resize-then-centre-crop processor is replaced by the pipeline's direct resize of the square crop to
  the crop size. Processors that shift values (`rescale_offset`) are refused.
- Input size. Read in `__init__` from the directory's (or the cached snapshot's) `preprocessor_config.json`
  (`crop_size` when it centre-crops, else `size`), else `config.json`'s `image_size`, else 224; json only.
  `load()` checks it against the loaded processor and model and corrects it, with a warning, if it differs.
- Labels. Each `id2label` entry is split into lowercase words (`"AI_Generated"` -> `ai generated`) and
  classed by whole words or phrases (FAKE_TERMS: fake, deepfake, artificial, ai, synthetic, generated,
  manipulated, spoof and their common forms; REAL_TERMS: real, authentic, human, natural, genuine,
  bona fide / bonafide, pristine, original). A label with words of both classes, with a negation
  (not, non, no), or with none of them is unclassed: "realism", "unreal" and "LABEL_0" are not "real".
  Every label must be classed, with at least one fake-like and, for a softmax head, one real-like label;
  otherwise the checkpoint is refused with its labels in the message. An operator can name the fake labels
  instead (`fake_labels`, exact and case-insensitive): then every other label is real and the word lists
  are not used.
- Score. Softmax heads (num_labels >= 2): P(fake) = sum of the softmax probabilities of the fake labels.
  A single-logit head (num_labels == 1) is read as the log-odds of its one label: sigmoid(z) if that label is
  fake-like, sigmoid(-z) if real-like, refused if unclassed. Multi-label (independent sigmoid) heads are
  refused: their per-label scores do not add up to a probability of fake.
- Lineage. The weights are identified by the sha256 of the whole directory (model store `hash_tree`): the
  local directory as configured, or the resolved snapshot directory of the cached commit. The version is
  `hf_classifier/<code_version>`, plus `@<commit>` when the revision is known (a repo id, or a local
  directory that is itself an HF snapshot).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from worker.detectors.base import Detector, DetectorLineage, half_precision
from worker.errors import ModelUnavailable
from worker.models import ModelStore

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

DETECTOR_NAME = "hf_classifier"
DEFAULT_INPUT_SIZE = 224
MODEL_FILE = "config.json"
PROCESSOR_FILE = "preprocessor_config.json"
FETCH_PATTERNS = ["*.json", "*.safetensors"]
COMMIT = re.compile(r"^[0-9a-f]{40}$")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
UNSET_MESSAGE = (
    "set DFW_HF_CLASSIFIER__MODEL to a local directory or org/repo with DFW_HF_CLASSIFIER__REVISION"
)

# whole words or phrases of a label, after lowercasing and splitting on anything but letters and digits
FAKE_TERMS = frozenset(
    {"fake", "fakes", "faked", "deepfake", "deepfakes", "deep fake", "artificial", "synthetic", "synthesized"}
    | {"ai", "ai generated", "generated", "manipulated", "manipulation", "spoof", "spoofed", "spoofing"}
)
REAL_TERMS = frozenset(
    {"real", "authentic", "human", "natural", "genuine", "bona fide", "bonafide", "pristine", "original"}
)
NEGATIONS = frozenset({"not", "non", "no"})


class HfClassifierConfig(BaseModel):
    model: str | None = Field(default=None, description="local directory, or org/repo in the HF cache")
    revision: str | None = Field(default=None, description="pinned revision (commit hash) for org/repo")
    looks_at: Literal["face", "frame"] = "face"
    fake_labels: list[str] = Field(
        default_factory=list,
        description="id2label names that mean fake (case-insensitive); every other label then means real",
    )


# --- labels ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelMap:
    """Which outputs of the head mean fake, and how the head turns logits into probabilities."""

    fake: tuple[int, ...]
    real: tuple[int, ...]
    single_logit: bool  # one logit read as the log-odds of its label


def class_of_label(label: str) -> Literal["fake", "real"] | None:
    """'fake' or 'real' by whole words of the label, None when it has neither, both, or a negation."""
    words = re.findall(r"[a-z0-9]+", label.lower())
    if not words or NEGATIONS.intersection(words):
        return None
    text = f" {' '.join(words)} "
    fake = any(f" {term} " in text for term in FAKE_TERMS)
    real = any(f" {term} " in text for term in REAL_TERMS)
    if fake == real:
        return None
    return "fake" if fake else "real"


def map_labels(id2label: Mapping[int, str], fake_labels: Sequence[str] = ()) -> LabelMap:
    """Class every output of the head as fake or real. Raises ValueError, listing the labels, if it can't."""
    labels = {int(index): str(label) for index, label in id2label.items()}
    listed = [labels[index] for index in sorted(labels)]
    if not labels:
        raise ValueError("the checkpoint has no id2label")
    if fake_labels:
        wanted = {name.strip().lower() for name in fake_labels}
        unknown = sorted(wanted - {label.strip().lower() for label in listed})
        if unknown:
            raise ValueError(f"fake_labels {unknown} are not labels of the checkpoint: {listed}")
        classes: dict[int, str | None] = {
            index: "fake" if label.strip().lower() in wanted else "real" for index, label in labels.items()
        }
    else:
        classes = {index: class_of_label(label) for index, label in labels.items()}
    unclassed = [labels[index] for index in sorted(classes) if classes[index] is None]
    fake = tuple(index for index in sorted(classes) if classes[index] == "fake")
    real = tuple(index for index in sorted(classes) if classes[index] == "real")
    single = len(labels) == 1
    problem = None
    if unclassed:
        problem = f"labels {unclassed} are neither fake-like nor real-like"
    elif single:
        pass  # one logit: the log-odds of its label, whichever class it is
    elif not fake:
        problem = "no label is fake-like"
    elif not real:
        problem = "no label is real-like"
    if problem is not None:
        raise ValueError(
            f"cannot map the checkpoint's labels {listed} to fake/real: {problem} (fake-like words: "
            f"{', '.join(sorted(FAKE_TERMS))}; real-like words: {', '.join(sorted(REAL_TERMS))}); "
            "name the fake labels with DFW_HF_CLASSIFIER__FAKE_LABELS to map them explicitly"
        )
    return LabelMap(fake=fake, real=real, single_logit=single)


# --- processor configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Normalisation:
    """The value transforms of an image processor: x * rescale, then (x - mean) / std."""

    rescale: float | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None


def normalise_pixels(
    batch: np.ndarray, device: str, rescale: float | None, mean: torch.Tensor | None, std: torch.Tensor | None
) -> torch.Tensor:
    """(N, S, S, 3) uint8 RGB -> (N, 3, S, S) float32 on `device`, rescaled and normalised like an image
    processor (shared by the transformers-based detectors)."""
    import torch

    pixels = torch.from_numpy(np.ascontiguousarray(batch, np.uint8)).to(device)
    inputs = pixels.permute(0, 3, 1, 2).to(torch.float32)
    if rescale is not None:
        inputs = inputs * rescale
    if mean is not None and std is not None:
        inputs = (inputs - mean) / std
    return inputs


def channel_values(value: Any, channels: int = 3) -> tuple[float, ...]:
    if isinstance(value, int | float):
        return (float(value),) * channels
    values = tuple(float(v) for v in value)
    if len(values) != channels:
        raise ValueError(f"expected {channels} per-channel values, got {list(values)}")
    return values


def normalisation_of(processor: Mapping[str, Any]) -> Normalisation:
    """Rescale and normalisation from a processor's settings. ValueError if they can't be reproduced."""
    if processor.get("rescale_offset"):
        raise ValueError("processor option rescale_offset is not supported")
    rescale = float(processor.get("rescale_factor", 1 / 255)) if processor.get("do_rescale", True) else None
    if not processor.get("do_normalize", True):
        return Normalisation(rescale, None, None)
    mean, std = processor.get("image_mean"), processor.get("image_std")
    if mean is None or std is None:
        raise ValueError("processor normalises but states no image_mean / image_std")
    return Normalisation(rescale, channel_values(mean), channel_values(std))


def square_side(size: Any) -> int | None:
    """The side of a square input from a processor `size` / `crop_size` or a config `image_size`."""
    if isinstance(size, int):
        return size
    if isinstance(size, Mapping):
        if size.get("height") is None or size.get("width") is None:
            edge = size.get("shortest_edge") or size.get("longest_edge")
            return int(edge) if edge else None
        size = (size["height"], size["width"])
    if not isinstance(size, list | tuple) or len(size) != 2:
        return None
    height, width = int(size[0]), int(size[1])
    if height != width:
        raise ValueError(f"the model takes non-square {height}x{width} inputs; crops are square")
    return int(height)


def side_of_processor(processor: Mapping[str, Any]) -> int | None:
    """The input side a processor produces: its crop size when it centre-crops, else its resize size."""
    crop = processor.get("crop_size") if processor.get("do_center_crop") else None
    return square_side(crop if crop is not None else processor.get("size"))


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def input_size_of_directory(directory: Path) -> int | None:
    """The input side from a checkpoint directory's json files, without importing transformers."""
    try:
        processor = read_json(directory / PROCESSOR_FILE)
        side = side_of_processor(processor) if processor is not None else None
        if side is None:
            model = read_json(directory / MODEL_FILE)
            side = square_side(model.get("image_size")) if model is not None else None
    except (ValueError, TypeError):
        return None
    return side


# --- where the checkpoint is ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    directory: Path  # the checkpoint directory (for a repo: its snapshot in the HF cache, maybe absent)
    repo: str | None  # org/repo when resolved in the HF cache
    revision: str | None  # the commit, when known


def snapshot_directory(repo: str, revision: str) -> Path:
    """Where the HF cache keeps the files of `repo` at commit `revision` (honours HF_HUB_CACHE / HF_HOME)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots" / revision


def resolve_source(model: str | None, revision: str | None) -> Source:
    """A local directory, or a repo id pinned to a commit. Raises ModelUnavailable; reads nothing."""
    if not model:
        raise ModelUnavailable(DETECTOR_NAME, UNSET_MESSAGE)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise ModelUnavailable(model, f"the directory {path} has no {MODEL_FILE}")
        known = path.name if path.parent.name == "snapshots" and COMMIT.match(path.name) else None
        return Source(path, None, known)
    if not REPO_ID.match(model):
        raise ModelUnavailable(model, f"no directory at {path}")
    if revision is None:
        raise ModelUnavailable(
            model,
            f"no directory at {path}, and as an org/repo it needs a pinned revision: set "
            "DFW_HF_CLASSIFIER__REVISION to a commit hash (unpinned models change under you)",
        )
    if not COMMIT.match(revision):
        raise ModelUnavailable(
            model, f"revision {revision!r} is not a commit hash (40 hex digits); branches and tags move"
        )
    return Source(snapshot_directory(model, revision), model, revision)


def fetch_snapshot(repo: str, revision: str) -> Path:
    """Download the json and safetensors files of the pinned commit into the HF cache."""
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo, revision=revision, allow_patterns=FETCH_PATTERNS)
    except Exception as exc:  # network, auth, missing revision: all mean the same to the worker
        raise ModelUnavailable(repo, f"fetching revision {revision} failed: {exc}") from exc
    return Path(str(path))


# --- the detector ---------------------------------------------------------------------------------------


class HfClassifierDetector(Detector):
    """P(fake) from a transformers image classifier, by its id2label names."""

    name = DETECTOR_NAME
    code_version = "1"

    def __init__(self, config: BaseModel, store: ModelStore, device: str = "cpu") -> None:
        super().__init__(config, store, device)
        self.looks_at = self.hf_config.looks_at
        self.input_size = self._declared_input_size()
        self._model: PreTrainedModel | None = None
        self._labels: LabelMap | None = None
        self._normalisation = Normalisation(None, None, None)
        self._fake_index: torch.Tensor | None = None
        self._mean: torch.Tensor | None = None
        self._std: torch.Tensor | None = None

    @property
    def hf_config(self) -> HfClassifierConfig:
        if not isinstance(self.config, HfClassifierConfig):
            raise TypeError(f"hf_classifier needs an HfClassifierConfig, got {type(self.config).__name__}")
        return self.config

    def _source(self) -> Source | None:
        try:
            return resolve_source(self.hf_config.model, self.hf_config.revision)
        except ModelUnavailable:
            return None

    def _declared_input_size(self) -> int:
        source = self._source()
        side = input_size_of_directory(source.directory) if source is not None else None
        return side or DEFAULT_INPUT_SIZE

    def weight_names(self) -> list[str]:
        """The checkpoint directory, hashed whole by the model store; nothing while it is unresolvable."""
        source = self._source()
        if source is None:
            return []
        if source.repo is not None:
            return [str(source.directory)]
        model = str(self.hf_config.model)
        return [model if ModelStore.is_local_ref(model) else os.path.join(".", model)]

    def lineage(self) -> DetectorLineage:
        base = super().lineage()
        source = self._source()
        if source is None or source.revision is None:
            return base
        return replace(base, version=f"{base.version}@{source.revision}")

    def _checkpoint_directory(self) -> tuple[str, Path]:
        source = resolve_source(self.hf_config.model, self.hf_config.revision)
        if source.repo is None or source.revision is None:
            return str(self.hf_config.model), source.directory
        if (source.directory / MODEL_FILE).is_file():
            return source.repo, source.directory
        if not self.store.allow_fetch:
            raise ModelUnavailable(
                source.repo,
                f"revision {source.revision} is not in the HF cache at {source.directory} "
                "and fetching is disabled",
            )
        return source.repo, fetch_snapshot(source.repo, source.revision)

    def _load(self) -> None:
        import torch

        ref, directory = self._checkpoint_directory()
        model = load_model(ref, directory)
        id2label = {int(index): str(label) for index, label in (model.config.id2label or {}).items()}
        try:
            labels = map_labels(id2label, self.hf_config.fake_labels)
            processor = read_processor(ref, directory)
            normalisation = normalisation_of(processor)
            side = side_of_processor(processor) or square_side(getattr(model.config, "image_size", None))
        except (ValueError, TypeError) as exc:
            raise ModelUnavailable(ref, str(exc)) from exc
        if side is not None and side != self.input_size:
            logger.warning(
                "hf_classifier %s takes %spx inputs, not the %spx read before load",
                ref,
                side,
                self.input_size,
            )
            self.input_size = side
        self._model = model.eval().to(self.device)
        self._labels = labels
        self._normalisation = normalisation
        self._fake_index = torch.tensor(labels.fake, dtype=torch.long, device=self.device)
        if normalisation.mean is not None and normalisation.std is not None:
            self._mean = torch.tensor(normalisation.mean, device=self.device).reshape(1, -1, 1, 1)
            self._std = torch.tensor(normalisation.std, device=self.device).reshape(1, -1, 1, 1)
        fake_names = [id2label[index] for index in labels.fake]
        logger.info(
            "hf_classifier loaded %s on %s: %spx, fake labels %s",
            ref,
            self.device,
            self.input_size,
            fake_names,
        )

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        """(N, S, S, 3) uint8 RGB -> normalised (N, 3, S, S) float32 pixel values on the device."""
        return normalise_pixels(batch, self.device, self._normalisation.rescale, self._mean, self._std)

    def fake_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, num_labels) logits -> (N,) P(fake)."""
        import torch

        if self._labels is None or self._fake_index is None:
            raise RuntimeError("hf_classifier not loaded")
        logits = logits.float()
        if self._labels.single_logit:
            sign = 1.0 if self._labels.fake else -1.0
            return torch.sigmoid(sign * logits[:, 0])
        return torch.softmax(logits, dim=-1).index_select(1, self._fake_index).sum(dim=1)

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if self._model is None:
            raise RuntimeError("hf_classifier model not loaded")
        with torch.inference_mode(), half_precision(self.device):
            logits = self._model(pixel_values=self.preprocess(batch)).logits
            return self.fake_probabilities(logits).cpu().numpy()


def load_model(ref: str, directory: Path) -> PreTrainedModel:
    """The classifier from a local checkpoint directory, float32, no remote code. Raises ModelUnavailable."""
    import torch
    from transformers import AutoModelForImageClassification

    try:
        model = AutoModelForImageClassification.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelUnavailable(ref, f"cannot load an image classifier from {directory}: {exc}") from exc
    config = model.config
    if getattr(config, "problem_type", None) == "multi_label_classification":
        raise ModelUnavailable(ref, "multi-label (independent sigmoid) heads are not supported")
    if getattr(config, "num_channels", 3) != 3:
        raise ModelUnavailable(ref, f"the model takes {config.num_channels} channels, not RGB")
    return model


def read_processor(ref: str, directory: Path) -> dict[str, Any]:
    """The image processor's settings (with class defaults), else its raw json. Raises ModelUnavailable."""
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False
        )
        return dict(processor.to_dict())
    except (OSError, ValueError, KeyError, ImportError, AttributeError) as exc:
        data = read_json(directory / PROCESSOR_FILE)
        if data is None:
            raise ModelUnavailable(
                ref,
                f"no image processor config ({PROCESSOR_FILE}) in {directory}: the normalisation the model "
                "was trained with is unknown; save its image processor next to the weights",
            ) from exc
        logger.warning(
            "hf_classifier %s: image processor not built (%s); using %s as is", ref, exc, PROCESSOR_FILE
        )
        return data


DETECTOR = HfClassifierDetector
