"""Turns an Analysis into the row dicts storage writes (the one place that knows both shapes)."""

from __future__ import annotations

from typing import Any

from worker.pipeline import Analysis, Pipeline


def analysis_rows(analysis: Analysis, pipeline: Pipeline) -> dict[str, Any]:
    lineages = {d.name: d.lineage() for d in pipeline.detectors}
    sampling = {
        "frames_requested": analysis.verdict.coverage.frames_requested,
        "method": analysis.method,
        "sampling": pipeline.settings.sampling.model_dump(mode="json"),
        "face_detector": pipeline.face_detector.lineage(),
    }
    faces = {(f.frame_index, f.face_index): f for f in analysis.faces}
    face_scores = []
    for score in analysis.scores:
        face = faces[(score.frame_index, score.face_index)]
        lineage = lineages[score.detector]
        x, y, w, h = face.box
        face_scores.append(
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
    timestamps = {f.index: f.timestamp_s for f in analysis.frames}
    frame_scores = [
        {
            "frame_index": score.frame_index,
            "timestamp_s": timestamps[score.frame_index],
            "detector": score.detector,
            "detector_version": lineages[score.detector].version,
            "weights": lineages[score.detector].weights,
            "sampling": sampling,
            "score": score.score,
        }
        for score in analysis.frame_scores
    ]
    verdict = analysis.verdict
    return {
        "frame_scores": frame_scores,
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
        "face_scores": face_scores,
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
