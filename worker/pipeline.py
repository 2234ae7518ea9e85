"""analyze(local file) -> Analysis. Pure: no S3, no database, no Celery.

A `Pipeline` loads its face detector and deepfake detectors once (per process) and then analyses files:
probe -> sample frames -> detect faces -> track -> crop -> score every crop with every detector in
batches -> aggregate into a verdict.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from worker.aggregate import FaceScore, FrameScore, Verdict, decide_verdict
from worker.detectors import Detector, create_detector
from worker.devices import choose_device
from worker.errors import ModelUnavailable
from worker.evaluation import resolve_threshold
from worker.faces import create_face_detector
from worker.faces.tracking import assign_tracks
from worker.faces.types import Face
from worker.faces.yunet import crop_face
from worker.media import Frame, MediaInfo, probe_media, sample_frames
from worker.models import ModelStore
from worker.settings import PIPELINE_SCHEMA, WorkerSettings, settings_digest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorStatus:
    name: str
    available: bool
    reason: str = ""


@dataclass(frozen=True)
class FrameRecord:
    index: int
    timestamp_s: float
    width: int
    height: int
    faces: int


@dataclass
class Analysis:
    info: MediaInfo
    method: str
    frames: list[FrameRecord]
    faces: list[Face]
    scores: list[FaceScore]
    verdict: Verdict
    timings: dict[str, float] = field(default_factory=dict)
    frame_scores: list[FrameScore] = field(default_factory=list)
    decoded_frames: list[Frame] = field(default_factory=list)  # kept only when asked (explanations)


class Pipeline:
    def __init__(self, settings: WorkerSettings, store: ModelStore | None = None) -> None:
        self.settings = settings
        self.store = store or ModelStore(settings.model_dir, allow_fetch=settings.model_fetch)
        self.device = "cpu"
        self.face_detector = create_face_detector(settings.faces, self.store)
        self.detectors: list[Detector] = []
        self.statuses: list[DetectorStatus] = []
        self.aggregate = settings.aggregate

    def load(self) -> list[DetectorStatus]:
        """Load the face detector and every configured detector whose weights are present.

        A detector whose weights are missing is disabled with one log line. Raises ModelUnavailable when the
        face detector or every detector is unavailable: nothing could be analysed.
        """
        if self.statuses:
            return self.statuses
        self.device = choose_device(self.settings.device)
        self.face_detector.load()
        for name in self.settings.detectors:
            detector = create_detector(name, self.settings.detector_config(name), self.store, self.device)
            try:
                detector.load()
            except ModelUnavailable as exc:
                logger.error("detector %s disabled: %s", name, exc)
                self.statuses.append(DetectorStatus(name, False, str(exc)))
                continue
            self.detectors.append(detector)
            self.statuses.append(DetectorStatus(name, True))
        self.aggregate = self.settings.aggregate.model_copy(update={"threshold": self.threshold()})
        if not self.detectors:
            reasons = "; ".join(s.reason for s in self.statuses)
            raise ModelUnavailable(
                ",".join(self.settings.detectors), f"no detector could be loaded ({reasons})"
            )
        return self.statuses

    def threshold(self) -> float:
        """The configured threshold, else the calibrated one for the loaded detector set, else 0.5."""
        names = [d.name for d in self.detectors]
        return resolve_threshold(self.settings.aggregate, self.settings.model_dir, names)

    def lineage(self) -> dict[str, Any]:
        """Everything that decides the numbers this pipeline produces, for storage with every result."""
        settings = self.settings.analysis_settings()
        lineages = [d.lineage() for d in self.detectors]
        settings["detectors"] = {
            lineage.name: {"version": lineage.version, "weights": lineage.weights, "config": lineage.config}
            for lineage in lineages
        }
        settings["face_detector"] = self.face_detector.lineage()
        settings["aggregate"] = self.aggregate.model_dump(mode="json")
        return settings

    @property
    def version(self) -> str:
        return f"{PIPELINE_SCHEMA}.{settings_digest(self.lineage())[:12]}"

    def analyze(self, path: Path, info: MediaInfo | None = None, keep_frames: bool = False) -> Analysis:
        """Analyse one local file. Raises worker.errors.MediaError for input that cannot be analysed."""
        self.load()
        timings: dict[str, float] = {}
        if info is None:
            with measure(timings, "probe"):
                info = probe_media(path, self.settings.limits)
        with measure(timings, "decode"):
            sample = sample_frames(
                path,
                info,
                self.settings.limits,
                self.settings.sampling.frames_per_video,
                method=self.settings.sampling.method,
            )
        with measure(timings, "faces"):
            faces_by_frame = [
                self.face_detector.detect(f.image, f.index, f.timestamp_s) for f in sample.frames
            ]
            assign_tracks(faces_by_frame, self.settings.faces.track_iou)
        frames = [
            FrameRecord(f.index, f.timestamp_s, f.image.shape[1], f.image.shape[0], len(found))
            for f, found in zip(sample.frames, faces_by_frame, strict=True)
        ]
        faces = [face for found in faces_by_frame for face in found]
        scores: list[FaceScore] = []
        frame_scores: list[FrameScore] = []
        for detector in self.detectors:
            with measure(timings, f"detector:{detector.name}"):
                if detector.looks_at == "face":
                    scores.extend(self.score_faces(detector, sample.frames, faces))
                else:
                    frame_scores.extend(self.score_frames(detector, sample.frames))
        with measure(timings, "aggregate"):
            verdict = decide_verdict(scores, self.aggregate, sample.requested, sample.decoded, frame_scores)
        kept = sample.frames if keep_frames else []
        return Analysis(info, sample.method, frames, faces, scores, verdict, timings, frame_scores, kept)

    def score_faces(self, detector: Detector, frames: list[Frame], faces: list[Face]) -> list[FaceScore]:
        """One detector's score for each face (crops made from `frames`)."""
        images = {f.index: f.image for f in frames}
        margin = self.settings.faces.crop_margin
        makers = [partial(crop_face, images[f.frame_index], f, detector.input_size, margin) for f in faces]
        values = self._predict_batched(detector, makers)
        return [
            FaceScore(f.track_id, f.frame_index, f.face_index, detector.name, v)
            for f, v in zip(faces, values, strict=True)
        ]

    def score_frames(self, detector: Detector, frames: list[Frame]) -> list[FrameScore]:
        """One whole-frame detector's score for each frame."""
        makers = [partial(square_frame, f.image, detector.input_size) for f in frames]
        values = self._predict_batched(detector, makers)
        return [
            FrameScore(f.index, detector.name, v, f.timestamp_s) for f, v in zip(frames, values, strict=True)
        ]

    def _predict_batched(self, detector: Detector, makers: Sequence[Callable[[], np.ndarray]]) -> list[float]:
        """Build inputs one batch at a time (crops are made lazily, so memory stays one batch wide)."""
        size = self.settings.batch_size
        values: list[float] = []
        for start in range(0, len(makers), size):
            batch = [make() for make in makers[start : start + size]]
            values.extend(float(v) for v in detector.predict(batch))
        return values


def square_frame(image: np.ndarray, size: int) -> np.ndarray:
    """The centre square of a frame, resized so its side is `size` (what whole-frame detectors see)."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(square, (size, size), interpolation=interpolation))


@contextmanager
def measure(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
