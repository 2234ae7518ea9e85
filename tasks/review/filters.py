"""The flagged list's query string: parsed and validated here, so a bad value is a clear 400, not a 500."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from urllib.parse import urlencode

from storage.queries import FlaggedFilter

LABEL_CHOICES: dict[str, tuple[str, ...]] = {
    "flagged": ("fake", "uncertain"),
    "fake": ("fake",),
    "uncertain": ("uncertain",),
    "real": ("real",),
    "no_face": ("no_face",),
    "all": ("fake", "uncertain", "real", "no_face"),
}
REVIEWED_CHOICES: dict[str, bool | None] = {"any": None, "yes": True, "no": False}
DURATION = re.compile(r"(\d+)\s*([smhdw])")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DETECTOR_NAME = re.compile(r"[a-z0-9_]{1,64}")
MAX_PAGE = 1_000_000
T = TypeVar("T")


class FilterError(ValueError):
    """A query-string value that cannot be used; the message names the field and what is accepted."""


@dataclass(frozen=True)
class ListQuery:
    """The list's filters as the reviewer typed them (kept as text to refill the form and build links)."""

    since: str = ""
    until: str = ""
    label: str = "flagged"
    min_score: str = ""
    max_score: str = ""
    detector: str = ""
    reviewed: str = "any"
    page: int = 1

    def url(self, page: int) -> str:
        """The list URL for these filters at another page (`since` always: empty means all time)."""
        values = asdict(replace(self, page=page))
        defaults = asdict(ListQuery())
        kept = {k: v for k, v in values.items() if v != defaults[k] or k == "since"}
        return "/?" + urlencode(kept)


def parse_time(text: str, field: str, now: datetime) -> datetime | None:
    """`30m`, `24h`, `7d`, `2w` (that long ago), an ISO date or time (UTC unless it says), or empty/`all`."""
    text = text.strip()
    if not text or text.lower() == "all":
        return None
    match = DURATION.fullmatch(text)
    if match:
        return now - timedelta(seconds=int(match.group(1)) * SECONDS[match.group(2)])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(f"{field}: {text!r} is neither a duration like 24h or 7d nor an ISO time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_score(text: str, field: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise FilterError(f"{field}: {text!r} is not a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise FilterError(f"{field}: {text!r} is not a number between 0 and 1")
    return value


def parse_page(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise FilterError(f"page: {text!r} is not a page number (1, 2, ...)")
    return int(text)


def collect(problems: list[str], parse: Callable[[], T], fallback: T) -> T:
    """parse(), or `fallback` with its FilterError noted: the reviewer hears about every bad field at once."""
    try:
        return parse()
    except FilterError as exc:
        problems.append(str(exc))
        return fallback


def parse_list_query(raw: Mapping[str, str], default_since: str) -> tuple[ListQuery, FlaggedFilter]:
    """The list's filters from a query string; FilterError names every field that is wrong."""
    query = ListQuery(
        since=raw.get("since", default_since).strip(),
        until=raw.get("until", "").strip(),
        label=raw.get("label", "flagged").strip() or "flagged",
        min_score=raw.get("min_score", "").strip(),
        max_score=raw.get("max_score", "").strip(),
        detector=raw.get("detector", "").strip(),
        reviewed=raw.get("reviewed", "any").strip() or "any",
    )
    now = datetime.now(UTC)
    problems: list[str] = []
    page = collect(problems, lambda: parse_page(raw.get("page", "1")), 1)
    since = collect(problems, lambda: parse_time(query.since, "since", now), None)
    until = collect(problems, lambda: parse_time(query.until, "until", now), None)
    low = collect(problems, lambda: parse_score(query.min_score, "min score"), None)
    high = collect(problems, lambda: parse_score(query.max_score, "max score"), None)
    if query.label not in LABEL_CHOICES:
        problems.append(f"label: {query.label!r} is not one of {', '.join(LABEL_CHOICES)}")
    if query.reviewed not in REVIEWED_CHOICES:
        problems.append(f"reviewed: {query.reviewed!r} is not one of {', '.join(REVIEWED_CHOICES)}")
    if query.detector and not DETECTOR_NAME.fullmatch(query.detector):
        problems.append(f"detector: {query.detector!r} is not a detector name")
    if low is not None and high is not None and low > high:
        problems.append(f"min score {low} is above max score {high}")
    if problems:
        raise FilterError("; ".join(problems))
    filters = FlaggedFilter(
        since=since,
        until=until,
        labels=LABEL_CHOICES[query.label],
        min_score=low,
        max_score=high,
        detector=query.detector or None,
        reviewed=REVIEWED_CHOICES[query.reviewed],
    )
    return replace(query, page=page), filters
