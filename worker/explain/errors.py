"""Errors of the explainers. Import-light: the task layer catches these without loading any model code."""

from __future__ import annotations


class ExplainerUnavailable(Exception):
    """An explainer could not produce an explanation: its server is down, too slow, refuses the request,
    or it is not configured. The verdict stands; only the explanation is missing.

    `transient` tells the caller whether trying again later may help (outage, timeout, 429, 5xx) or not
    (a 4xx other than 429, a missing setting, a response that is not chat-completions JSON).
    """

    def __init__(
        self,
        explainer: str,
        reason: str,
        *,
        transient: bool,
        status: int | None = None,
        attempts: int = 0,
    ) -> None:
        detail = f"explainer {explainer!r} unavailable: {reason}"
        if attempts:
            detail += f" (after {attempts} attempt{'s' if attempts != 1 else ''})"
        super().__init__(detail)
        self.explainer = explainer
        self.reason = reason
        self.transient = transient
        self.status = status
        self.attempts = attempts
