"""Between the worker's objects and storage's rows: the one place that knows both shapes."""

from __future__ import annotations

from typing import Any, Literal, cast

import numpy as np

from storage.schema import Media
from storage.schema import Verdict as VerdictRow
from worker.aggregate import Coverage, FaceScore, FrameScore, Label, TrackScore, Verdict
from worker.detectors.base import DetectorLineage
from worker.faces.types import Face
from worker.media import MediaInfo
from worker.pipeline import Analysis, Pipeline


def analysis_rows(analysis: Analysis, pipeline: Pipeline) -> dict[str, Any]:
    lineages = {d.name: d.lineage() for d in pipeline.detectors}
    sampling = {
        "frames_requested": analysis.verdict.coverage.frames_requested,
        "method": analysis.method,
        "sampling": pipeline.settings.sampling.model_dump(mode="json"),
        "face_detector": pipeline.face_detector.lineage(),
    }
    timestamps = {f.index: f.timestamp_s for f in analysis.frames}
    return {
        "frame_scores": frame_score_rows(analysis.frame_scores, timestamps, lineages, sampling),
        "frames": [
            {
                "frame_index": f.index,
                "timestamp_s": f.timestamp_s,
                "width": f.width,
                "height": f.height,
                "faces": f.faces,
            }
            for f in analysis.frames
        ],
        "face_scores": face_score_rows(analysis.faces, analysis.scores, lineages, sampling),
        **verdict_rows(analysis.verdict),
    }


def face_score_rows(
    faces: list[Face], scores: list[FaceScore], lineages: dict[str, DetectorLineage], sampling: dict[str, Any]
) -> list[dict[str, Any]]:
    by_key = {(f.frame_index, f.face_index): f for f in faces}
    rows = []
    for score in scores:
        face, lineage = by_key[(score.frame_index, score.face_index)], lineages[score.detector]
        x, y, w, h = face.box
        rows.append(
            {
                "frame_index": score.frame_index,
                "face_index": score.face_index,
                "timestamp_s": face.timestamp_s,
                "track_id": score.track_id,
                "box_x": x,
                "box_y": y,
                "box_w": w,
                "box_h": h,
                "face_confidence": face.confidence,
                "detector": score.detector,
                "detector_version": lineage.version,
                "weights": lineage.weights,
                "sampling": sampling,
                "score": score.score,
            }
        )
    return rows


def frame_score_rows(
    scores: list[FrameScore],
    timestamps: dict[int, float],
    lineages: dict[str, DetectorLineage],
    sampling: dict[str, Any],
) -> list[dict[str, Any]]:
    return [
        {
            "frame_index": s.frame_index,
            "timestamp_s": timestamps.get(s.frame_index, s.timestamp_s),
            "detector": s.detector,
            "detector_version": lineages[s.detector].version,
            "weights": lineages[s.detector].weights,
            "sampling": sampling,
            "score": s.score,
        }
        for s in scores
    ]


def verdict_rows(verdict: Verdict) -> dict[str, Any]:
    """The `tracks` and `verdict` rows of a verdict."""
    return {
        "tracks": [
            {
                "track_id": t.track_id,
                "faces": t.faces,
                "first_frame": t.first_frame,
                "last_frame": t.last_frame,
                "score": t.score,
                "detectors": t.detectors,
                "counted": t.counted,
            }
            for t in verdict.tracks
        ],
        "verdict": {
            "label": verdict.label,
            "score": verdict.score,
            "threshold": verdict.threshold,
            "policy": verdict.policy,
            "detectors": verdict.detectors,
            "frames_requested": verdict.coverage.frames_requested,
            "frames_decoded": verdict.coverage.frames_decoded,
            "faces": verdict.coverage.faces,
            "tracks": verdict.coverage.tracks,
        },
    }


def media_info_from_row(media: Media) -> MediaInfo:
    kind: Literal["image", "video"] = "video" if media.kind == "video" else "image"
    return MediaInfo(
        kind,
        media.format,
        media.codec,
        media.width,
        media.height,
        media.duration_s,
        media.fps,
        media.frame_count,
        media.size_bytes,
    )


def verdict_from_rows(row: VerdictRow, tracks: list[dict[str, Any]]) -> Verdict:
    """The stored verdict as the worker's Verdict, for explainers (read-only: nothing writes it back)."""
    coverage = Coverage(row.frames_requested, row.frames_decoded, row.faces, row.tracks)
    label = cast(Label, row.label)
    return Verdict(
        label,
        row.score,
        row.threshold,
        row.policy,
        coverage,
        dict(row.detectors),
        [TrackScore(**track) for track in tracks],
    )


def evidence_inputs(details: dict[str, Any]) -> tuple[list[Face], list[FaceScore], list[FrameScore]]:
    """Faces and scores as the pipeline produced them, rebuilt from stored rows (see storage.queries)."""
    faces: dict[tuple[int, int], Face] = {}
    face_scores = []
    for row in details["faces"]:
        key = (row["frame_index"], row["face_index"])
        if key not in faces:
            faces[key] = Face(
                row["frame_index"],
                row["timestamp_s"],
                row["face_index"],
                tuple(row["box"]),
                np.zeros((5, 2), np.float32),
                row["face_confidence"],
                track_id=row["track_id"],
            )
        face_scores.append(
            FaceScore(row["track_id"], row["frame_index"], row["face_index"], row["detector"], row["score"])
        )
    frame_scores = [
        FrameScore(row["frame_index"], row["detector"], row["score"], row["timestamp_s"])
        for row in details["frame_scores"]
    ]
    return list(faces.values()), face_scores, frame_scores
