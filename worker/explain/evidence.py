"""The built-in `evidence` explainer: a short factual paragraph built from the verdict itself, no model.

The paragraph says, in this order and leaving out what does not apply: the label and the score against the
threshold; each detector's score; the most suspicious counted tracks (videos) or faces (images); the
highest-scoring faces or frames of a video with their timestamps; how much was examined (frames decoded of
requested, faces, tracks); what could not be checked (no face, frames that did not decode, tracks ignored as
too short, and the caller's `notes`, e.g. a detector that did not run); and that it was generated from
detector scores, not by a language model.

Formats: scores and thresholds with 2 decimals ("0.83"); timestamps as m:ss.s ("0:06.0", "12:04.5"),
h:mm:ss.s from an hour on; track and face ids as stored with the scores. Plain text, one paragraph,
deterministic: the same verdict, evidence and notes give the same string.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel

from worker.aggregate import TrackScore, Verdict
from worker.explain.base import Evidence, Explainer, Explanation
from worker.media import MediaInfo

MOST = 3  # tracks, faces or moments named in one sentence
DISCLAIMER = "This text was generated from the detector scores alone, not from a language model's opinion."


class EvidenceConfig(BaseModel):
    pass


class EvidenceExplainer(Explainer):
    name: ClassVar[str] = "evidence"
    needs_images: ClassVar[bool] = False  # reads scores only: the task layer need not decode frames

    def explain(
        self, media: MediaInfo, verdict: Verdict, evidence: list[Evidence], notes: Sequence[str] = ()
    ) -> Explanation:
        """`notes`: what the caller knows was not checked (e.g. "detector meso4 did not run: no weights")."""
        started = time.perf_counter()
        text = evidence_text(media, verdict, evidence, notes)
        return Explanation(explainer=self.name, text=text, latency_s=time.perf_counter() - started)


def evidence_text(
    media: MediaInfo, verdict: Verdict, evidence: Sequence[Evidence], notes: Sequence[str] = ()
) -> str:
    sentences = [
        verdict_sentence(verdict),
        detectors_sentence(verdict),
        tracks_sentence(media, verdict),
        moments_sentence(media, evidence),
        coverage_sentence(media, verdict),
        gaps_sentence(media, verdict, notes),
        DISCLAIMER,
    ]
    return " ".join(s for s in sentences if s)


# --- formats --------------------------------------------------------------------------------------------


def format_score(value: float) -> str:
    return f"{value:.2f}"


def format_time(seconds: float) -> str:
    """m:ss.s, or h:mm:ss.s from an hour on; rounded to a tenth of a second."""
    tenths = round(max(seconds, 0.0) * 10)
    minutes, tenths = divmod(tenths, 600)
    hours, minutes = divmod(minutes, 60)
    second = f"{tenths // 10:02d}.{tenths % 10}"
    return f"{hours}:{minutes:02d}:{second}" if hours else f"{minutes}:{second}"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def join_words(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


# --- sentences ------------------------------------------------------------------------------------------


def verdict_sentence(verdict: Verdict) -> str:
    threshold = format_score(verdict.threshold)
    if verdict.score is None:
        return f"Labelled {verdict.label}: nothing could be scored, so there is no score."
    score = format_score(verdict.score)
    if verdict.label == "fake":
        return f"Labelled fake: the score {score} is at or above the threshold {threshold}."
    if verdict.label == "uncertain":
        return (
            f"Labelled uncertain: the score {score} is below the threshold {threshold} "
            "but within the uncertainty margin."
        )
    return f"Labelled {verdict.label}: the score {score} is below the threshold {threshold}."


def detectors_sentence(verdict: Verdict) -> str | None:
    if not verdict.detectors:
        return None
    parts = [f"{name} {format_score(value)}" for name, value in sorted(verdict.detectors.items())]
    return f"Detector scores: {', '.join(parts)}."


def ranked_tracks(verdict: Verdict) -> list[TrackScore]:
    tracks = [t for t in verdict.tracks if t.counted]
    return sorted(tracks, key=lambda t: (-t.score, t.track_id))[:MOST]


def tracks_sentence(media: MediaInfo, verdict: Verdict) -> str | None:
    tracks = ranked_tracks(verdict)
    if not tracks:
        return None
    if media.kind == "image":
        parts = [f"face {t.track_id}, score {format_score(t.score)}" for t in tracks]
        return f"Most suspicious {'face' if len(parts) == 1 else 'faces'}: {'; '.join(parts)}."
    parts = [
        f"track {t.track_id}, score {format_score(t.score)} over {counted(t.faces, 'sampled frame')} "
        + (f"(frame {t.first_frame})" if t.faces == 1 else f"(frames {t.first_frame} to {t.last_frame})")
        for t in tracks
    ]
    return f"Most suspicious {'track' if len(parts) == 1 else 'tracks'}: {'; '.join(parts)}."


def moments_sentence(media: MediaInfo, evidence: Sequence[Evidence]) -> str | None:
    """A video's highest-scoring faces or frames with their timestamps (an image has no moments)."""
    if media.kind != "video" or not evidence:
        return None
    items = sorted(evidence, key=lambda e: (-e.score, e.timestamp_s, e.frame_index))[:MOST]
    parts = []
    for item in items:
        what = (
            "the whole frame" if item.kind == "frame" or item.track_id is None else f"track {item.track_id}"
        )
        parts.append(f"{what} at {format_time(item.timestamp_s)} ({format_score(item.score)})")
    return f"Highest-scoring {'moment' if len(parts) == 1 else 'moments'}: {', '.join(parts)}."


def coverage_sentence(media: MediaInfo, verdict: Verdict) -> str:
    coverage = verdict.coverage
    if media.kind == "image":
        examined = f"Examined the image ({media.width}x{media.height})"
    else:
        length = f"a {format_time(media.duration_s)} video" if media.duration_s is not None else "a video"
        if coverage.frames_decoded == coverage.frames_requested:
            examined = f"Examined {counted(coverage.frames_decoded, 'sampled frame')} of {length}"
        else:
            decoded, requested = coverage.frames_decoded, coverage.frames_requested
            examined = f"Examined {decoded} of {requested} requested frames of {length}"
    if coverage.faces == 0:
        return f"{examined}."
    if media.kind == "image":
        return f"{examined}: {counted(coverage.faces, 'face')}."
    return f"{examined}: {counted(coverage.faces, 'face')} in {counted(coverage.tracks, 'track')}."


def gaps_sentence(media: MediaInfo, verdict: Verdict, notes: Sequence[str]) -> str | None:
    coverage = verdict.coverage
    gaps = []
    if coverage.faces == 0:
        if verdict.label == "no_face":
            gaps.append("no face was found and no whole-frame detector ran")
        else:
            gaps.append("no face was found, so only whole-frame detectors scored")
    missing = coverage.frames_requested - coverage.frames_decoded
    if missing > 0:
        gaps.append(f"{missing} of the {coverage.frames_requested} requested frames could not be decoded")
    ignored = [t for t in verdict.tracks if not t.counted]
    if ignored and media.kind == "video":
        names = [f"{t.track_id} ({counted(t.faces, 'sampled frame')})" for t in ignored]
        verb = "was" if len(names) == 1 else "were"
        gaps.append(
            f"{'track' if len(names) == 1 else 'tracks'} {join_words(names)} {verb} ignored as too short"
        )
    gaps.extend(note.strip().rstrip(".") for note in notes if note.strip())
    if not gaps:
        return None
    return f"Not checked: {'; '.join(gaps)}."


EXPLAINER = EvidenceExplainer
