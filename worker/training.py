"""`dfw train`: tune a detector's small adapter on a frozen backbone.

Inputs are the crops the service would score: face crops from the same face pipeline as `dfw scan` (or the
centre square of each frame for whole-frame detectors), cached on disk so a second epoch or a second run
does not decode and detect again. Augmentation follows Wang et al., "CNN-generated images are surprisingly
easy to spot... for now" (CVPR 2020), which UnivFD and the CLIP adapters train with: Gaussian blur
(sigma ~ U[0, 3]) and JPEG re-compression (quality ~ U[30, 100]) each with probability 0.5, plus a random
down-and-up resize and horizontal flips.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from worker.datasets import Example
from worker.detectors.base import TrainableDetector
from worker.errors import MediaError
from worker.faces import create_face_detector
from worker.faces.yunet import crop_face
from worker.media import probe_media, sample_frames
from worker.pipeline import square_frame
from worker.settings import WorkerSettings, settings_digest

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # done, total, message


class CropCache:
    """Crops per input file, stored as .npy under a key of the file's identity and the crop settings."""

    def __init__(self, directory: Path, settings: WorkerSettings, looks_at: str, size: int) -> None:
        self.directory = directory
        self.settings = settings
        self.looks_at = looks_at
        self.size = size
        self.faces = create_face_detector(settings.faces, store_for(settings))
        self.directory.mkdir(parents=True, exist_ok=True)
        recipe = {
            "looks_at": looks_at,
            "size": size,
            "faces": settings.faces.model_dump(mode="json"),
            "sampling": settings.sampling.model_dump(mode="json"),
        }
        self.recipe = settings_digest(recipe)[:16]

    def key(self, path: Path) -> str:
        stat = path.stat()
        identity = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.recipe}"
        return hashlib.sha256(identity.encode()).hexdigest()[:32]

    def crops(self, path: Path) -> np.ndarray:
        """(K, S, S, 3) uint8 crops of one file; K may be 0 (no face, or not decodable)."""
        target = self.directory / f"{self.key(path)}.npy"
        if target.is_file():
            return np.load(target)
        crops = self._extract(path)
        np.save(target, crops)
        return crops

    def _extract(self, path: Path) -> np.ndarray:
        limits = self.settings.limits
        try:
            info = probe_media(path, limits)
            sample = sample_frames(path, info, limits, self.settings.sampling.frames_per_video)
        except MediaError as exc:
            logger.warning("skipping %s: %s", path, exc)
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        items = []
        for frame in sample.frames:
            if self.looks_at == "frame":
                items.append(square_frame(frame.image, self.size))
                continue
            found = self.faces.detect(frame.image, frame.index, frame.timestamp_s)
            if found:  # the most confident face of each frame
                items.append(crop_face(frame.image, found[0], self.size, self.settings.faces.crop_margin))
        if not items:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        return np.stack(items)


def store_for(settings: WorkerSettings) -> Any:
    from worker.models import ModelStore

    return ModelStore(settings.model_dir, allow_fetch=settings.model_fetch)


def augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random training view of a uint8 RGB crop (same size out)."""
    size = crop.shape[0]
    image = crop
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if rng.random() < 0.3:
        small = max(8, int(size * rng.uniform(0.5, 1.0)))
        image = cv2.resize(cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA), (size, size))
    if rng.random() < 0.5:
        sigma = rng.uniform(0.0, 3.0)
        if sigma > 0.05:
            image = cv2.GaussianBlur(image, (0, 0), sigma)
    if rng.random() < 0.5:
        image = recompress_jpeg(image, int(rng.integers(30, 101)))
    return np.ascontiguousarray(image, dtype=np.uint8)


def recompress_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:
        return image
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


@dataclass
class TrainingSet:
    crops: np.ndarray  # (M, S, S, 3) uint8
    labels: np.ndarray  # (M,) float32, 1 = fake
    files_used: int
    files_skipped: list[str]


def collect_crops(examples: list[Example], cache: CropCache, progress: Progress | None = None) -> TrainingSet:
    crops, labels, skipped = [], [], []
    for number, example in enumerate(examples, start=1):
        found = cache.crops(example.path) if example.path.is_file() else np.zeros((0,))
        if len(found) == 0:
            skipped.append(str(example.path))
        else:
            crops.append(found)
            labels.extend([float(example.label)] * len(found))
        if progress:
            progress(number, len(examples), f"faces {example.path.name[:40]}")
    if not crops:
        raise ValueError("no usable crops: every input was skipped (no face found or not decodable)")
    return TrainingSet(np.concatenate(crops), np.asarray(labels, np.float32), len(crops), skipped)


@dataclass
class TrainReport:
    detector: str
    examples: int
    crops: int
    skipped: int
    epochs: int
    steps: int
    final_loss: float
    seconds: float
    weights: str = ""
    sha256: str = ""

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2)


def train_adapter(
    detector: TrainableDetector,
    data: TrainingSet,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    progress: Progress | None = None,
) -> TrainReport:
    """Optimise only the adapter with BCE on fake log-odds; classes weighted to balance."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = detector.adapter_parameters()
    for param in params:
        param.requires_grad_(True)
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    fakes = float(data.labels.sum())
    detector.pos_weight = torch.tensor((len(data.labels) - fakes) / max(fakes, 1.0), device=detector.device)
    started, steps, loss_value = time.perf_counter(), 0, float("nan")
    total = epochs * ((len(data.labels) + batch_size - 1) // batch_size)
    for _ in range(epochs):
        order = rng.permutation(len(data.labels))
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = np.stack([augment(data.crops[i], rng) for i in index])
            target = torch.from_numpy(data.labels[index]).to(detector.device)
            loss = detector.training_loss(detector.preprocess(batch), target)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            steps, loss_value = steps + 1, float(loss.detach())
            if progress:
                progress(steps, total, f"loss {loss_value:.4f}")
    return TrainReport(
        detector.name,
        data.files_used + len(data.files_skipped),
        len(data.labels),
        len(data.files_skipped),
        epochs,
        steps,
        loss_value,
        time.perf_counter() - started,
    )
