"""The pipeline's fast path on real dev videos with the real YuNet and MesoNet weights: face detection on
every k-th dense frame with interpolation between, the adaptive second pass, decoding ahead in a thread."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from worker.aggregate import decide_verdict
from worker.errors import ErrorCode, MediaError
from worker.faces.tracking import assign_tracks, box_iou
from worker.faces.types import Face
from worker.media import Frame, probe_media, sample_frames
from worker.media.plan import pick_dense_indices
from worker.pipeline import Analysis, Pipeline
from worker.settings import AggregateConfig, FaceConfig, SamplingConfig, WorkerSettings

OBAMA = "real/inthewild_video/itw_RealObama.mp4"  # 49 frames at 12.5 fps
YOUTUBE_AVI = "real/ffpp_video_transcoded/ffpp_youtube_004.avi"  # 125 frames at 25 fps
TAXI = "real/inthewild_video/itw_RealTaxi.mp4"  # 69 frames at 10 fps, score about 0.18


def make_pipeline(models_dir: Path, **updates: Any) -> Pipeline:
    import torch

    torch.set_num_threads(1)
    updates.setdefault("detectors", ["meso4"])  # these tests are about frames and faces; one detector
    settings = WorkerSettings(model_dir=models_dir, model_fetch=False, device="cpu", **updates)
    pipeline = Pipeline(settings)
    pipeline.load()
    return pipeline


def count_detections(pipeline: Pipeline) -> list[int]:
    """Wrap the face detector so that every call is counted (frame index per call)."""
    detector = pipeline.face_detector
    original = detector.detect
    calls: list[int] = []

    def detect(image: np.ndarray, frame_index: int = 0, timestamp_s: float = 0.0) -> list[Face]:
        calls.append(frame_index)
        return original(image, frame_index, timestamp_s)

    detector.detect = detect  # type: ignore[method-assign]
    return calls


def best_iou(face: Face, others: list[Face]) -> float:
    return max((box_iou(face.box_xyxy(), o.box_xyxy()) for o in others), default=0.0)


@pytest.mark.parametrize("name", [OBAMA, YOUTUBE_AVI])
def test_dense_frames_detect_every_third_and_interpolate_close_boxes(
    models_dir: Path, dev_dir: Path, name: str
) -> None:
    dense = SamplingConfig(frames_per_video=48)
    every = make_pipeline(models_dir, sampling=dense)
    third = make_pipeline(
        models_dir, sampling=dense, faces=FaceConfig(detect_every=3, interpolate_within_s=1.0)
    )
    every_calls, third_calls = count_detections(every), count_detections(third)
    full, sparse = every.analyze(dev_dir / name), third.analyze(dev_dir / name)

    assert len(every_calls) == len(full.frames) == 48
    assert len(third_calls) == 17  # positions 0, 3, ..., 45 and the last one
    assert [f.index for f in sparse.frames] == [f.index for f in full.frames]
    assert third.version != every.version  # face settings are part of the pipeline version
    interpolated = [f for f in sparse.faces if not f.detected]
    assert interpolated and {f.frame_index for f in interpolated}.isdisjoint(third_calls)
    assert all(f.detected for f in full.faces)
    by_frame: dict[int, list[Face]] = {}
    for face in full.faces:
        by_frame.setdefault(face.frame_index, []).append(face)
    ious = [best_iou(f, by_frame.get(f.frame_index, [])) for f in interpolated]
    assert min(ious) >= 0.5 and statistics.median(ious) >= 0.85
    # one person, one track through detected and interpolated faces; every face scored once
    assert sparse.verdict.coverage.tracks == full.verdict.coverage.tracks == 1
    assert len(sparse.scores) == len(sparse.faces) == 48
    assert sparse.verdict.label == full.verdict.label
    assert sparse.verdict.score == pytest.approx(full.verdict.score, abs=0.05)


def test_sparse_frames_are_all_detected_even_with_detect_every(models_dir: Path, dev_dir: Path) -> None:
    pipeline = make_pipeline(models_dir, faces=FaceConfig(detect_every=3))  # 16 frames over 5 s: 0.33 s apart
    calls = count_detections(pipeline)
    analysis = pipeline.analyze(dev_dir / YOUTUBE_AVI)
    assert len(calls) == 16 and all(f.detected for f in analysis.faces)


def test_uncertain_verdict_gets_a_second_pass_around_its_most_suspicious_frames(
    models_dir: Path, dev_dir: Path
) -> None:
    wide = AggregateConfig(threshold=0.9, uncertain_margin=0.85)  # [0.05, 0.9) is uncertain
    first_only = make_pipeline(models_dir, aggregate=wide)
    two_pass = make_pipeline(
        models_dir, aggregate=wide, sampling=SamplingConfig(second_pass_frames=8, second_pass_centres=2)
    )
    first = first_only.analyze(dev_dir / YOUTUBE_AVI)
    both = two_pass.analyze(dev_dir / YOUTUBE_AVI)
    assert first.verdict.label == "uncertain" and first.verdict.coverage.frames_decoded == 16

    first_indices = [f.index for f in first.frames]
    per_frame = {s.frame_index: s.score for s in first.scores}  # one face per frame, one detector
    expected = pick_dense_indices(
        first_indices, [per_frame.get(i) for i in first_indices], 125, extra=8, centres=2
    )
    assert len(expected) == 8
    assert [f.index for f in both.frames] == sorted(first_indices + expected)
    assert both.verdict.coverage.frames_requested == both.verdict.coverage.frames_decoded == 24
    assert "second_pass:decode" in both.timings and "second_pass:faces" in both.timings
    # the first pass is unchanged; the verdict is decided again over the faces of both passes, one track
    assert {s.frame_index: s.score for s in both.scores if s.frame_index in per_frame} == pytest.approx(
        per_frame
    )
    again = decide_verdict(both.scores, two_pass.aggregate, 24, 24)
    assert both.verdict == again and both.verdict.coverage.tracks == 1
    assert both.verdict.score != pytest.approx(first.verdict.score)


def test_no_second_pass_for_a_certain_verdict_or_when_off(models_dir: Path, dev_dir: Path) -> None:
    pipeline = make_pipeline(models_dir, sampling=SamplingConfig(second_pass_frames=8))
    analysis = pipeline.analyze(dev_dir / TAXI)  # about 0.18 against 0.5: real
    assert analysis.verdict.label == "real" and analysis.verdict.coverage.frames_decoded == 16
    assert not any(key.startswith("second_pass") for key in analysis.timings)
    assert SamplingConfig().second_pass_frames == 0 and FaceConfig().detect_every == 1


def summary(analysis: Analysis) -> tuple[Any, ...]:
    faces = [(f.frame_index, f.face_index, f.track_id, f.box, f.landmarks.tolist()) for f in analysis.faces]
    scores = [(s.frame_index, s.face_index, s.track_id, s.detector, s.score) for s in analysis.scores]
    return analysis.method, analysis.frames, faces, scores, analysis.verdict


@pytest.mark.parametrize(
    "name",
    [
        OBAMA,
        YOUTUBE_AVI,
        "fake/ffpp_video/ffpp_Deepfakes_519_515.mp4",
        "real/deepface_photos/deepface_couple.jpg",
    ],
)
def test_decoding_ahead_in_a_thread_changes_nothing(models_dir: Path, dev_dir: Path, name: str) -> None:
    inline = make_pipeline(models_dir, sampling=SamplingConfig(decode_ahead=0))
    ahead = make_pipeline(models_dir, sampling=SamplingConfig(decode_ahead=2))
    assert inline.version == ahead.version  # when frames are decoded does not change the numbers
    assert summary(inline.analyze(dev_dir / name)) == summary(ahead.analyze(dev_dir / name))


def test_frames_are_dropped_unless_kept_and_kept_ones_are_the_samplers(
    models_dir: Path, dev_dir: Path
) -> None:
    pipeline = make_pipeline(models_dir)
    path = dev_dir / OBAMA
    assert pipeline.analyze(path).decoded_frames == []
    kept = pipeline.analyze(path, keep_frames=True).decoded_frames
    settings = pipeline.settings
    sample = sample_frames(path, probe_media(path, settings.limits), settings.limits, 16)
    assert [f.index for f in kept] == [f.index for f in sample.frames]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(kept, sample.frames, strict=True))


def test_the_sampler_hands_on_each_frame_as_it_is_decoded(dev_dir: Path) -> None:
    path = dev_dir / YOUTUBE_AVI
    settings = WorkerSettings()
    info = probe_media(path, settings.limits)
    plain = sample_frames(path, info, settings.limits, 16)
    planned: list[list[int]] = []
    handed: list[Frame] = []

    def keep_index_only(frame: Frame) -> Frame:
        handed.append(frame)
        return Frame(frame.index, frame.timestamp_s, np.zeros((0, 0, 3), np.uint8))

    streamed = sample_frames(
        path, info, settings.limits, 16, on_plan=lambda i, t: planned.append(i), on_frame=keep_index_only
    )
    assert planned == [[f.index for f in plain.frames]]
    assert [f.index for f in handed] == [f.index for f in plain.frames]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(handed, plain.frames, strict=True))
    assert [f.image.size for f in streamed.frames] == [0] * 16 and streamed.decoded == 16


def test_rescoring_faces_without_their_frames_is_a_media_error(models_dir: Path, dev_dir: Path) -> None:
    """A backfill that decoded only the first-pass frames skips the job instead of storing partial scores."""
    pipeline = make_pipeline(models_dir)
    analysis = pipeline.analyze(dev_dir / OBAMA, keep_frames=True)
    (detector,) = pipeline.detectors
    again = pipeline.score_faces(detector, analysis.decoded_frames, analysis.faces)
    assert [s.score for s in again] == pytest.approx([s.score for s in analysis.scores], abs=1e-6)
    with pytest.raises(MediaError) as caught:
        pipeline.score_faces(detector, analysis.decoded_frames[1:], analysis.faces)
    assert caught.value.code is ErrorCode.NO_FRAMES and str(analysis.frames[0].index) in caught.value.message


@pytest.mark.parametrize("name", [OBAMA, "fake/inthewild_video/itw_FakeKimK.mp4"])
def test_streaming_gives_the_verdict_of_decoding_every_frame_first(
    models_dir: Path, dev_dir: Path, name: str
) -> None:
    """The pipeline as it was before streaming, spelled out: all frames, then all faces, then all scores."""
    pipeline = make_pipeline(models_dir)
    path, settings = dev_dir / name, pipeline.settings
    info = probe_media(path, settings.limits)
    sample = sample_frames(path, info, settings.limits, settings.sampling.frames_per_video)
    found = [pipeline.face_detector.detect(f.image, f.index, f.timestamp_s) for f in sample.frames]
    assign_tracks(found, settings.faces.track_iou)
    faces = [face for in_frame in found for face in in_frame]
    scores = [s for d in pipeline.detectors for s in pipeline.score_faces(d, sample.frames, faces)]
    verdict = decide_verdict(scores, pipeline.aggregate, sample.requested, sample.decoded)

    analysis = pipeline.analyze(path)
    assert [(f.frame_index, f.face_index, f.track_id, f.box) for f in analysis.faces] == [
        (f.frame_index, f.face_index, f.track_id, f.box) for f in faces
    ]
    assert analysis.scores == scores and analysis.verdict == verdict
