"""analyze(local file) -> Analysis. Pure: no S3, no database, no Celery.

A `Pipeline` loads its face detector and deepfake detectors once (per process) and then analyses files:
probe -> sample frames -> detect faces -> track -> crop -> score every crop with every detector in
batches -> aggregate into a verdict. Frames stream: each is processed (faces, crops, batches) as soon as it
is decoded, by a background thread when `sampling.decode_ahead` > 0, and its pixels are then dropped, so
memory holds a few frames, not all of them (`FramePass`). Tracks and the verdict come after the last frame;
an uncertain video may get a second pass of denser frames (`sampling.second_pass_frames`).
"""

from __future__ import annotations

import bisect
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
from worker.errors import ErrorCode, MediaError, ModelUnavailable
from worker.evaluation import resolve_threshold
from worker.faces import create_face_detector
from worker.faces.interpolation import interpolate_faces, plan_detections, weight_between
from worker.faces.tracking import assign_tracks
from worker.faces.types import Face
from worker.faces.yunet import crop_face
from worker.media import Frame, FrameSample, MediaInfo, probe_media, sample_frames
from worker.media.decoders import FrameHook
from worker.media.frames import PlanHook, read_frames
from worker.media.plan import pick_dense_indices
from worker.media.prefetch import run_ahead
from worker.models import ModelStore
from worker.settings import PIPELINE_SCHEMA, WorkerSettings, settings_digest

logger = logging.getLogger(__name__)

NO_PIXELS = np.zeros((0, 0, 3), np.uint8)  # what the sampler keeps of a frame handed on to the pipeline


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
        return resolve_threshold(
            self.settings.aggregate, self.settings.model_dir, names, self.detector_versions()
        )

    def detector_versions(self) -> dict[str, str]:
        """Each loaded detector's version (code and weights): what a calibration is valid for."""
        return {d.name: d.lineage().version for d in self.detectors}

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
        """Analyse one local file. Raises worker.errors.MediaError for input that cannot be analysed.

        Frames stream from the sampler (decoded ahead in a background thread, `sampling.decode_ahead`) into
        face detection, crops and detector batches; a frame's pixels are dropped once nothing needs them
        (kept only with `keep_frames`). An uncertain video verdict may get a second pass (`sampling.
        second_pass_frames`) of denser frames around the most suspicious ones; the verdict is then decided
        again over the frames of both passes.
        """
        self.load()
        timings: dict[str, float] = {}
        if info is None:
            with measure(timings, "probe"):
                info = probe_media(path, self.settings.limits)
        sampling, limits = self.settings.sampling, self.settings.limits
        first = self.run_pass(
            lambda on_plan, on_frame: sample_frames(
                path,
                info,
                limits,
                sampling.frames_per_video,
                method=sampling.method,
                on_plan=on_plan,
                on_frame=on_frame,
            ),
            timings,
            keep_frames,
        )
        passes = [first]
        with measure(timings, "aggregate"):
            verdict = first_verdict = self.decide(passes)
        extra = self.second_pass_indices(first, verdict, info)
        if extra:
            method = sampling.method if sampling.method in ("decord", "seek", "sequential") else "auto"
            second = self.run_pass(
                lambda on_plan, on_frame: read_frames(
                    path, info, limits, extra, method=method, on_plan=on_plan, on_frame=on_frame
                ),
                timings,
                keep_frames,
                stage="second_pass:",
            )
            passes.append(second)
            with measure(timings, "aggregate"):
                verdict = self.decide(passes)
            logger.info(
                "%s: second pass of %s frames: %s %s -> %s %s",
                path.name,
                second.decoded,
                first_verdict.label,
                first_verdict.score,
                verdict.label,
                verdict.score,
            )
        return self.assemble(info, first.method, passes, verdict, timings)

    def run_pass(
        self,
        read: Callable[[PlanHook, FrameHook], FrameSample],
        timings: dict[str, float],
        keep_frames: bool,
        stage: str = "",
    ) -> FramePass:
        """Decode frames with `read` (a sampler call given the two hooks) and process each as it arrives."""
        work = FramePass(self, keep_frames)
        clock = {"blocked": 0.0, "decode": 0.0}

        def hand_on(put: Callable[[Plan | Frame], None], frame: Frame) -> Frame:
            before = time.perf_counter()
            put(frame)
            clock["blocked"] += time.perf_counter() - before
            return Frame(frame.index, frame.timestamp_s, NO_PIXELS)

        def produce(put: Callable[[Plan | Frame], None]) -> FrameSample:
            start = time.perf_counter()
            sample = read(lambda indices, times: put(Plan(indices, times)), partial(hand_on, put))
            clock["decode"] = time.perf_counter() - start - clock["blocked"]  # not handing frames on
            return sample

        def consume(item: Plan | Frame) -> None:
            if isinstance(item, Plan):
                work.plan(item.indices, item.times)
            else:
                work.add(item)

        sample = run_ahead(produce, consume, self.settings.sampling.decode_ahead)
        work.finish(sample)
        timings[f"{stage}decode"] = timings.get(f"{stage}decode", 0.0) + clock["decode"]
        for name, seconds in work.timings.items():
            timings[f"{stage}{name}"] = timings.get(f"{stage}{name}", 0.0) + seconds
        return work

    def decide(self, passes: Sequence[FramePass]) -> Verdict:
        """Tracks over the frames of every pass (in frame order), then the verdict over all their scores."""
        by_index = sorted((i, faces) for p in passes for i, faces in p.faces_by_index().items())
        assign_tracks([faces for _, faces in by_index], self.settings.faces.track_iou)
        scores = [s for p in passes for s in p.face_scores()]
        frame_scores = [s for p in passes for s in p.frame_scores]
        requested = sum(p.requested for p in passes)
        decoded = sum(p.decoded for p in passes)
        return decide_verdict(scores, self.aggregate, requested, decoded, frame_scores)

    def second_pass_indices(self, first: FramePass, verdict: Verdict, info: MediaInfo) -> list[int]:
        """Frames for a second pass: only for an uncertain video verdict with `second_pass_frames` set."""
        extra = self.settings.sampling.second_pass_frames
        if extra <= 0 or info.kind != "video" or verdict.label != "uncertain" or not first.decoded:
            return []
        indices = sorted(first.faces_by_index())
        suspicion = first.suspicion()
        total = max(info.frame_count or 0, indices[-1] + 1)
        centres = self.settings.sampling.second_pass_centres
        return pick_dense_indices(indices, [suspicion.get(i) for i in indices], total, extra, centres)

    def assemble(
        self,
        info: MediaInfo,
        method: str,
        passes: Sequence[FramePass],
        verdict: Verdict,
        timings: dict[str, float],
    ) -> Analysis:
        records = sorted((r for p in passes for r in p.records.values()), key=lambda r: r.index)
        by_index = sorted((i, faces) for p in passes for i, faces in p.faces_by_index().items())
        faces = [face for _, found in by_index for face in found]
        scores = sorted(
            (s for p in passes for s in p.face_scores()), key=lambda s: (s.frame_index, s.face_index)
        )
        order = {d.name: k for k, d in enumerate(self.detectors)}
        scores.sort(key=lambda s: order[s.detector])  # stable: per detector, in frame order (as before)
        frame_scores = sorted(
            (s for p in passes for s in p.frame_scores), key=lambda s: (order[s.detector], s.frame_index)
        )
        kept = sorted((f for p in passes for f in p.kept.values()), key=lambda f: f.index)
        return Analysis(info, method, records, faces, scores, verdict, timings, frame_scores, kept)

    def predict(self, detector: Detector, inputs: Sequence[np.ndarray]) -> list[float]:
        return [float(v) for v in detector.predict(list(inputs))]

    def score_faces(self, detector: Detector, frames: list[Frame], faces: list[Face]) -> list[FaceScore]:
        """One detector's score for each face (crops made from `frames`), e.g. for a backfill.

        Raises MediaError (no_frames) when a face's frame is not among `frames`, e.g. a second-pass frame
        of an analysis whose frames were sampled again without its second pass."""
        images = {f.index: f.image for f in frames}
        missing = sorted({f.frame_index for f in faces} - set(images))
        if missing:
            raise MediaError(
                ErrorCode.NO_FRAMES, f"faces on frames {missing} but those frames were not given"
            )
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
            values.extend(self.predict(detector, [make() for make in makers[start : start + size]]))
        return values


@dataclass(frozen=True)
class Plan:
    """The frames a sampler is about to decode, and their times."""

    indices: list[int]
    times: list[float]


class FramePass:
    """One pass over a file's frames, done frame by frame as they are decoded (in any order).

    Per frame: its record; its faces (detected, or interpolated between the detections on either side when
    `faces.detect_every` > 1: such a frame waits until both are known); for every face detector a crop of each
    face and for every frame detector the frame's input, scored a batch at a time as soon as a batch is full.
    The frame's pixels are then dropped (kept when asked, for explanations).
    """

    def __init__(self, pipeline: Pipeline, keep_frames: bool) -> None:
        self.pipeline = pipeline
        self.config = pipeline.settings.faces
        self.keep_frames = keep_frames
        self.method = ""
        self.requested = 0
        self.decoded = 0
        self.indices: list[int] = []
        self.times: list[float] = []
        self.position: dict[int, int] = {}
        self.anchors: list[int] = []
        self.faces: dict[int, list[Face]] = {}  # by position
        self.records: dict[int, FrameRecord] = {}  # by position
        self.waiting: dict[int, Frame] = {}  # by position: frames waiting for detections on either side
        self.kept: dict[int, Frame] = {}
        self.timings: dict[str, float] = {}
        self.batches: dict[str, list[tuple[tuple[int, int], np.ndarray]]] = {
            d.name: [] for d in pipeline.detectors
        }
        self.values: dict[str, dict[tuple[int, int], float]] = {d.name: {} for d in pipeline.detectors}
        self.frame_scores: list[FrameScore] = []

    def plan(self, indices: list[int], times: list[float]) -> None:
        self.indices, self.times = indices, times
        self.position = {index: position for position, index in enumerate(indices)}
        self.anchors = plan_detections(times, self.config.detect_every, self.config.interpolate_within_s)

    def add(self, frame: Frame) -> None:
        position = self.position.get(frame.index)
        if position is None:  # a frame nobody announced: give it a position of its own after the others
            position = len(self.indices) + len(self.records)
            self.anchors.append(position)
        height, width = frame.image.shape[:2]
        self.records[position] = FrameRecord(frame.index, frame.timestamp_s, width, height, 0)
        if self.keep_frames:
            self.kept[position] = frame
        self.queue_frame_inputs(frame)
        if position in self.anchors:
            with measure(self.timings, "faces"):
                found = self.detect(frame)
            self.set_faces(position, frame, found)
        else:
            self.waiting[position] = frame
        self.resolve_waiting()

    def detect(self, frame: Frame) -> list[Face]:
        return self.pipeline.face_detector.detect(frame.image, frame.index, frame.timestamp_s)

    def neighbours(self, position: int) -> tuple[int, int] | None:
        after = bisect.bisect_right(self.anchors, position)
        if after == 0 or after == len(self.anchors):
            return None
        return self.anchors[after - 1], self.anchors[after]

    def resolve_waiting(self) -> None:
        for position in sorted(self.waiting):
            around = self.neighbours(position)
            if around is None or around[0] not in self.faces or around[1] not in self.faces:
                continue
            frame = self.waiting.pop(position)
            with measure(self.timings, "faces"):
                found = self.interpolate(position, frame, *around)
            self.set_faces(position, frame, found)

    def interpolate(self, position: int, frame: Frame, before: int, after: int) -> list[Face]:
        weight = weight_between(
            self.times[before], self.times[after], self.times[position], (before, position, after)
        )
        return interpolate_faces(
            self.faces[before],
            self.faces[after],
            weight,
            frame.index,
            frame.timestamp_s,
            self.config.track_iou,
            self.config.max_faces_per_frame,
        )

    def set_faces(self, position: int, frame: Frame, found: list[Face]) -> None:
        self.faces[position] = found
        record = self.records[position]
        self.records[position] = FrameRecord(
            record.index, record.timestamp_s, record.width, record.height, len(found)
        )
        margin = self.config.crop_margin
        for detector in self.pipeline.detectors:
            if detector.looks_at != "face":
                continue
            with measure(self.timings, f"detector:{detector.name}"):
                self.batches[detector.name].extend(
                    (
                        (face.frame_index, face.face_index),
                        crop_face(frame.image, face, detector.input_size, margin),
                    )
                    for face in found
                )
            self.score_full_batches(detector)

    def queue_frame_inputs(self, frame: Frame) -> None:
        for detector in self.pipeline.detectors:
            if detector.looks_at == "frame":
                with measure(self.timings, f"detector:{detector.name}"):
                    square = square_frame(frame.image, detector.input_size)
                    self.batches[detector.name].append(((frame.index, -1), square))
                self.score_full_batches(detector)

    def score_full_batches(self, detector: Detector, rest: bool = False) -> None:
        size = self.pipeline.settings.batch_size
        pending = self.batches[detector.name]
        while len(pending) >= size or (rest and pending):
            batch, pending[:] = pending[:size], pending[size:]
            with measure(self.timings, f"detector:{detector.name}"):
                values = self.pipeline.predict(detector, [x for _, x in batch])
            for (key, _), value in zip(batch, values, strict=True):
                self.values[detector.name][key] = value

    def finish(self, sample: FrameSample) -> None:
        """After the last frame: frames whose detection on either side never came are detected themselves;
        the last, partial batches are scored."""
        for position in sorted(self.waiting):
            frame = self.waiting.pop(position)
            with measure(self.timings, "faces"):
                found = self.detect(frame)
            self.set_faces(position, frame, found)
        for detector in self.pipeline.detectors:
            self.score_full_batches(detector, rest=True)
        times = dict(zip(self.indices, self.times, strict=True))
        for detector in self.pipeline.detectors:
            if detector.looks_at == "frame":
                self.frame_scores.extend(
                    FrameScore(index, detector.name, value, times.get(index, 0.0))
                    for (index, _), value in sorted(self.values[detector.name].items())
                )
        self.method, self.requested, self.decoded = sample.method, sample.requested, sample.decoded

    def faces_by_index(self) -> dict[int, list[Face]]:
        return {self.records[p].index: faces for p, faces in self.faces.items()}

    def face_scores(self) -> list[FaceScore]:
        """Every face detector's score of every face, with the face's current track id."""
        scores: list[FaceScore] = []
        for detector in self.pipeline.detectors:
            if detector.looks_at != "face":
                continue
            values = self.values[detector.name]
            for _, found in sorted(self.faces_by_index().items()):
                scores.extend(
                    FaceScore(
                        f.track_id,
                        f.frame_index,
                        f.face_index,
                        detector.name,
                        values[(f.frame_index, f.face_index)],
                    )
                    for f in found
                )
        return scores

    def suspicion(self) -> dict[int, float]:
        """Per frame index, how fake it looks: the mean of its most suspicious face's scores (mean over face
        detectors) and its frame detectors' mean score, of those present; frames with neither are left out."""
        faces: dict[int, dict[int, list[float]]] = {}
        for score in self.face_scores():
            faces.setdefault(score.frame_index, {}).setdefault(score.face_index, []).append(score.score)
        frames: dict[int, list[float]] = {}
        for item in self.frame_scores:
            frames.setdefault(item.frame_index, []).append(item.score)
        result = {}
        for index in set(faces) | set(frames):
            parts = [max(sum(v) / len(v) for v in faces[index].values())] if index in faces else []
            if index in frames:
                parts.append(sum(frames[index]) / len(frames[index]))
            result[index] = sum(parts) / len(parts)
        return result


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
