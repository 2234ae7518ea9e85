"""What the templates show: plain values gathered from storage/queries.py, no SQL and no HTML here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from math import ceil
from statistics import fmean
from typing import Any

from sqlalchemy.orm import Session

from storage.queries import FlaggedFilter, find_jobs, flagged_page, job_details, media_reviews, sampled_frames
from storage.reviews import NOTE_MAX_CHARS, REVIEWER_MAX_CHARS
from tasks.review.filters import LABEL_CHOICES, REVIEWED_CHOICES, ListQuery
from tasks.review.frames import pick_frames
from tasks.review.plot import score_plot, track_color
from tasks.review.settings import ReviewSettings
from worker.detectors import DETECTOR_MODULES

DECISIONS = (("fake", "Confirm fake"), ("real", "Mark real"), ("unsure", "Unsure"))
DECISION_WORDS = {"fake": "confirmed fake", "real": "marked real", "unsure": "unsure"}


@dataclass(frozen=True)
class Box:
    """One face on one frame, in the frame's own pixels, with its mean score over face detectors."""

    track_id: int
    face_index: int
    x: float
    y: float
    w: float
    h: float
    score: float
    color: str
    scores: dict[str, float]


@dataclass(frozen=True)
class DetectorRow:
    name: str
    looks_at: str  # "face" or "frame"
    versions: list[str]
    media_score: float | None  # the detector's part of the verdict
    count: int
    low: float | None
    mean: float | None
    high: float | None


def face_boxes(faces: Sequence[dict[str, Any]]) -> dict[int, list[Box]]:
    """Face score rows (one per face and detector) -> boxes per frame index."""
    grouped: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for row in faces:
        grouped[(row["frame_index"], row["face_index"])].append(row)
    boxes: dict[int, list[Box]] = defaultdict(list)
    for (frame_index, face_index), rows in sorted(grouped.items()):
        x, y, w, h = rows[0]["box"]
        track = rows[0]["track_id"]
        scores = {row["detector"]: float(row["score"]) for row in rows}
        mean = fmean(scores.values())
        boxes[frame_index].append(Box(track, face_index, x, y, w, h, mean, track_color(track), scores))
    return boxes


def detector_rows(verdict: dict[str, Any], details: dict[str, Any]) -> list[DetectorRow]:
    """Per detector: what it looks at, its versions, its part of the verdict and the spread of its scores."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in details["faces"]:
        groups[(row["detector"], "face")].append(row)
    for row in details["frame_scores"]:
        groups[(row["detector"], "frame")].append(row)
    media_scores: dict[str, Any] = verdict.get("detectors") or {}
    for name in media_scores:
        if not any(key[0] == name for key in groups):
            groups[(name, "")] = []
    rows = []
    for (name, looks_at), items in sorted(groups.items()):
        scores = [float(item["score"]) for item in items]
        part = media_scores.get(name)
        rows.append(
            DetectorRow(
                name=name,
                looks_at=looks_at,
                versions=sorted({item["detector_version"] for item in items}),
                media_score=part if isinstance(part, int | float) else None,
                count=len(scores),
                low=min(scores) if scores else None,
                mean=fmean(scores) if scores else None,
                high=max(scores) if scores else None,
            )
        )
    return rows


def list_context(
    session: Session, query: ListQuery, filters: FlaggedFilter, settings: ReviewSettings
) -> dict[str, Any]:
    size = settings.page_size
    jobs, total = flagged_page(session, filters, offset=(query.page - 1) * size, limit=size)
    pages = max(1, ceil(total / size))
    return {
        "query": query,
        "jobs": jobs,
        "total": total,
        "first": (query.page - 1) * size + 1 if jobs else 0,
        "last": (query.page - 1) * size + len(jobs),
        "pages": pages,
        "prev_url": query.url(query.page - 1) if query.page > 1 else None,
        "next_url": query.url(query.page + 1) if query.page < pages else None,
        "label_choices": list(LABEL_CHOICES),
        "reviewed_choices": list(REVIEWED_CHOICES),
        "detectors": sorted(DETECTOR_MODULES),
        "decision_words": DECISION_WORDS,
    }


def media_context(session: Session, job_id: int, settings: ReviewSettings) -> dict[str, Any] | None:
    """Everything the media page shows about one job, or None when there is no such job."""
    jobs = find_jobs(session, str(job_id))
    if not jobs:
        return None
    job = jobs[0]
    details = job_details(session, job_id)
    frames = sampled_frames(session, job_id)
    verdict = job["verdict"] or {}
    boxes = face_boxes(details["faces"])
    duration = (job["media"] or {}).get("duration")
    shown = pick_frames(frames, settings.frames_shown)
    return {
        "job": job,
        "verdict": verdict,
        "frames": [{**f, "boxes": boxes.get(f["frame_index"], [])} for f in shown],
        "frames_total": len(frames),
        "plot": score_plot(details["faces"], details["frame_scores"], verdict.get("threshold"), duration),
        "detectors": detector_rows(verdict, details),
        "tracks": details["tracks"],
        "reviews": media_reviews(session, job_id),
        "decisions": DECISIONS,
        "decision_words": DECISION_WORDS,
        "note_max": NOTE_MAX_CHARS,
        "reviewer_max": REVIEWER_MAX_CHARS,
    }
