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
from worker.sbi import self_blend
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


@dataclass(frozen=True)
class Augmentation:
    """Probabilities and ranges of the random training views (applied to both classes alike)."""

    flip: float = 0.5
    resize: float = 0.3  # down-and-up resampling to a side of U[resize_min, 1] x the crop's
    resize_min: float = 0.5
    blur: float = 0.5
    blur_sigma: float = 3.0  # Gaussian sigma ~ U[0, blur_sigma]
    jpeg: float = 0.5  # re-compression with quality ~ U[30, 100]
    edges: float = 0.0  # repeat the edge pixels over random strips, as a crop reaching past the image does
    sharpen: float = 0.0  # unsharp masking (amount ~ U[0.3, 1.5]): sharp faces are not only the fakes'


AUGMENTATIONS = {
    # CNNDetection's recipe, as UnivFD and the CLIP adapters train
    "standard": Augmentation(),
    # For networks trained from scratch on small crops, where the dev classes differ in JPEG quality,
    # resolution, sharpness and crop borders: each is randomised on both classes; blur scaled to a ~100 px
    # crop (sigma 3 on 224 px). Lighter than it could be: blending traces (worker.sbi) do not survive
    # heavy blur and resampling (a first run that re-compressed 80 % of views learnt them poorly).
    "strong": Augmentation(
        flip=0.5, resize=0.4, resize_min=0.5, blur=0.3, blur_sigma=1.5, jpeg=0.5, edges=0.3, sharpen=0.2
    ),
}


def augment(
    crop: np.ndarray, rng: np.random.Generator, recipe: Augmentation = AUGMENTATIONS["standard"]
) -> np.ndarray:
    """One random training view of a uint8 RGB crop (same size out)."""
    size = crop.shape[0]
    image = crop
    if rng.random() < recipe.flip:
        image = image[:, ::-1]
    if rng.random() < recipe.resize:
        small = max(8, int(size * rng.uniform(recipe.resize_min, 1.0)))
        image = cv2.resize(cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA), (size, size))
    if rng.random() < recipe.blur:
        sigma = rng.uniform(0.0, recipe.blur_sigma)
        if sigma > 0.05:
            image = cv2.GaussianBlur(image, (0, 0), sigma)
    if rng.random() < recipe.sharpen:
        amount = rng.uniform(0.3, 1.5)
        soft = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.6, 1.5))
        image = cv2.addWeighted(np.ascontiguousarray(image), 1.0 + amount, soft, -amount, 0)
    if rng.random() < recipe.edges:
        image = repeat_edges(image, rng)
    if rng.random() < recipe.jpeg:
        image = recompress_jpeg(image, int(rng.integers(30, 101)))
    return np.ascontiguousarray(image, dtype=np.uint8)


def repeat_edges(image: np.ndarray, rng: np.random.Generator, widest: float = 0.25) -> np.ndarray:
    """Each side, with probability 1/2, gets a strip of up to `widest` x side that repeats the strip's inner
    edge row or column: what `crop_face` produces where a crop reaches past the photo."""
    out = np.array(image, copy=True)
    size = out.shape[0]
    for side in range(4):
        if rng.random() >= 0.5:
            continue
        width = int(rng.integers(1, max(2, int(size * widest))))
        if side == 0:
            out[:width] = out[width]
        elif side == 1:
            out[-width:] = out[-width - 1]
        elif side == 2:
            out[:, :width] = out[:, width : width + 1]
        else:
            out[:, -width:] = out[:, -width - 1 : -width]
    return out


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
    sbi: float = 0.0,
    augmentation: str = "standard",
    weight_decay: float = 0.0,
    schedule: str = "constant",
    progress: Progress | None = None,
) -> TrainReport:
    """Optimise only the adapter with BCE on fake log-odds; classes weighted to balance.

    `sbi` is the probability that a real crop of a batch is replaced by a self-blended pseudo-fake of itself
    (worker.sbi), labelled fake. `schedule` "cosine" decays the learning rate to zero over the run.
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    recipe = AUGMENTATIONS[augmentation]
    params = detector.adapter_parameters()
    for param in params:
        param.requires_grad_(True)
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    per_epoch = (len(data.labels) + batch_size - 1) // batch_size
    total = epochs * per_epoch
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(total, 1))
        if schedule == "cosine"
        else None
    )
    reals = float(len(data.labels) - data.labels.sum())
    fakes = float(data.labels.sum()) + sbi * reals
    detector.pos_weight = torch.tensor(reals * (1.0 - sbi) / max(fakes, 1.0), device=detector.device)
    started, steps, loss_value = time.perf_counter(), 0, float("nan")
    detector.set_training(True)
    try:
        for _ in range(epochs):
            order = rng.permutation(len(data.labels))
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                views, labels = [], []
                for i in index:
                    crop, label = data.crops[i], float(data.labels[i])
                    if sbi > 0 and label == 0.0 and rng.random() < sbi:
                        crop, label = self_blend(crop, rng), 1.0
                    views.append(augment(crop, rng, recipe))
                    labels.append(label)
                target = torch.tensor(labels, dtype=torch.float32, device=detector.device)
                loss = detector.training_loss(detector.preprocess(np.stack(views)), target)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                if scheduler is not None:
                    scheduler.step()
                steps, loss_value = steps + 1, float(loss.detach())
                if progress:
                    progress(steps, total, f"loss {loss_value:.4f}")
    finally:
        detector.set_training(False)
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
