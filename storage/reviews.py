"""Reviewer decisions. A decision is about a media's content (every job of it), so it survives backfills.

Decisions are appended, never updated: the newest one counts (see storage/queries.py), the older ones are
the audit trail.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.schema import REVIEW_DECISIONS, Job, Review, Verdict

NOTE_MAX_CHARS = 2000
REVIEWER_MAX_CHARS = 128


class ReviewError(ValueError):
    """The decision cannot be recorded as given; `problems` say why, in words for the reviewer."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class ReviewTargetMissing(LookupError):
    """No job with that id, or one without media (a failed fetch): there is nothing to review."""


def validate_review(decision: str, reviewer: str, note: str) -> tuple[str, str, str]:
    """The cleaned (decision, reviewer, note), or ReviewError naming every problem."""
    decision = decision.strip().lower()
    reviewer = reviewer.strip()
    note = note.strip().replace("\r\n", "\n")
    problems = []
    if decision not in REVIEW_DECISIONS:
        problems.append(f"decision must be one of {', '.join(REVIEW_DECISIONS)}")
    if not reviewer:
        problems.append("reviewer name is required")
    elif len(reviewer) > REVIEWER_MAX_CHARS:
        problems.append(f"reviewer name is longer than {REVIEWER_MAX_CHARS} characters")
    if len(note) > NOTE_MAX_CHARS:
        problems.append(f"note is {len(note)} characters; the limit is {NOTE_MAX_CHARS}")
    if problems:
        raise ReviewError(problems)
    return decision, reviewer, note


def record_review(session: Session, job_id: int, decision: str, reviewer: str, note: str = "") -> int:
    """Append a decision about the media of `job_id` in the caller's transaction; returns the review id."""
    decision, reviewer, note = validate_review(decision, reviewer, note)
    row = session.execute(
        select(Job.media_id, Verdict.label, Verdict.score)
        .outerjoin(Verdict, Verdict.job_id == Job.id)
        .where(Job.id == job_id)
    ).one_or_none()
    if row is None or row.media_id is None:
        raise ReviewTargetMissing(f"job {job_id} does not exist or has no media to review")
    review = Review(
        media_id=row.media_id,
        job_id=job_id,
        model_label=row.label,
        model_score=row.score,
        decision=decision,
        reviewer=reviewer,
        note=note,
    )
    session.add(review)
    session.flush()
    return review.id
