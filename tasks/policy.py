"""Which verdicts get an explanation."""

from __future__ import annotations


def should_explain(label: str, policy: str) -> bool:
    """`all`: every verdict; `flagged`: fake or uncertain; `none`: never."""
    return policy == "all" or (policy == "flagged" and label in ("fake", "uncertain"))
