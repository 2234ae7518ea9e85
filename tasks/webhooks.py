"""`dfw.deliver_webhook`: POST a job's final verdict, signed, to its callback URL, on the `webhooks` queue.

- The callback URL is given at enqueue (`callback_url`, stored in the job's caller metadata under the reserved
  key `dfw_callback_url`, so that retries, the reaper and backfills keep it) or configured per caller
  (`DFW_WEBHOOKS__CALLERS`, keyed by `metadata["caller"]`). An explicit URL wins.
- Sent once the verdict is final (job done or failed), right after the detect task returns; it does not wait
  for the explanation: `explanation` is included only if one exists at send time.
- Signature: `X-DFW-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>` with the Unix
  timestamp in `X-DFW-Timestamp`; receivers reject timestamps outside the replay window (`verify_signature`).
- Retries with capped, jittered exponential backoff on connection errors, timeouts, 429 and 5xx; any other
  answer is final. Every attempt is a `webhook_deliveries` row; a delivered job is never POSTed again.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from celery.signals import task_success
from sqlalchemy.exc import OperationalError

from storage.db import session_factory, transaction
from storage.settings import get_storage_settings
from storage.webhooks import delivery_state, final_verdict, is_retryable, is_success, record_delivery
from tasks.app import app
from tasks.settings import WebhookSettings, get_service_settings

logger = logging.getLogger(__name__)

DELIVER_TASK = "dfw.deliver_webhook"
CALLBACK_KEY = "dfw_callback_url"  # reserved key of the caller metadata
CALLER_KEY = "caller"
TIMESTAMP_HEADER = "X-DFW-Timestamp"
SIGNATURE_HEADER = "X-DFW-Signature"
USER_AGENT = "dfw-webhooks/1"


def with_callback(metadata: dict[str, Any] | None, callback_url: str | None) -> dict[str, Any]:
    """The caller metadata with the callback URL under its reserved key (unchanged without a URL)."""
    merged = dict(metadata or {})
    if callback_url:
        merged[CALLBACK_KEY] = callback_url
    return merged


def callback_url_for(metadata: dict[str, Any], callers: dict[str, str]) -> str | None:
    explicit = metadata.get(CALLBACK_KEY)
    if isinstance(explicit, str) and explicit:
        return explicit
    caller = metadata.get(CALLER_KEY)
    return callers.get(caller) if isinstance(caller, str) else None


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    secret: str, timestamp: str, body: bytes, signature_header: str, now: float, window: float
) -> bool:
    """True if `signature_header` signs `timestamp + "." + body` and the timestamp is within `window`
    seconds of `now` (older ones are replays; a little clock skew into the future is tolerated too)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > window:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), signature_header)


def payload(verdict: dict[str, Any]) -> dict[str, Any]:
    """The JSON body: the final verdict, the caller's metadata without the reserved key."""
    metadata = {k: v for k, v in verdict["caller_metadata"].items() if k != CALLBACK_KEY}
    return {
        "event": "verdict",
        "job_id": verdict["job_id"],
        "status": verdict["status"],
        "media_sha256": verdict["media_sha256"],
        "bucket": verdict["bucket"],
        "key": verdict["key"],
        "metadata": metadata,
        "label": verdict["label"],
        "score": verdict["score"],
        "threshold": verdict["threshold"],
        "coverage": verdict["coverage"],
        "explanation": verdict["explanation"],
        "error_code": verdict["error_code"],
        "pipeline_version": verdict["pipeline_version"],
        "finished_at": verdict["finished_at"],
    }


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer (final), never followed: the body and signature go where configured


_opener = urllib.request.build_opener(_NoRedirects)


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str | None
    duration_s: float


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Attempt:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    start = time.monotonic()
    try:
        with _opener.open(request, timeout=timeout_s) as response:
            response.read(65536)
            code = int(response.status)
        return Attempt(code, None, time.monotonic() - start)
    except urllib.error.HTTPError as exc:
        return Attempt(int(exc.code), None, time.monotonic() - start)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Attempt(None, f"{type(exc).__name__}: {reason}", time.monotonic() - start)


def backoff_s(attempt: int, settings: WebhookSettings) -> float:
    """Delay before attempt `attempt + 1`: doubles from `backoff_s`, capped, full jitter in [cap/2, cap]."""
    cap = min(settings.backoff_max_s, settings.backoff_s * 2 ** max(0, attempt - 1))
    return random.uniform(cap / 2, cap)


@dataclass(frozen=True)
class Delivery:
    job_id: int
    status: str  # delivered, rejected, retry, exhausted, duplicate, skipped
    attempt: int = 0
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "status": self.status, "attempt": self.attempt, "detail": self.detail}


def run_delivery(job_id: int) -> Delivery:
    settings = get_service_settings().webhooks
    factory = session_factory(get_storage_settings().database_url)
    with factory() as session:
        verdict = final_verdict(session, job_id)
        if verdict is None:
            return Delivery(job_id, "skipped", detail="job is not done or failed")
        url = callback_url_for(verdict["caller_metadata"], settings.callers)
        if url is None:
            return Delivery(job_id, "skipped", detail="no callback URL")
        state = delivery_state(session, job_id)
    if state.delivered or state.rejected:
        return Delivery(job_id, "duplicate", state.attempts, "already delivered or rejected")
    if state.attempts >= settings.max_attempts:
        return Delivery(job_id, "exhausted", state.attempts)
    body = json.dumps(payload(verdict), sort_keys=True, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(settings.secret.get_secret_value(), timestamp, body),
    }
    result = post(url, body, headers, settings.timeout_s)
    with transaction(factory) as session:
        attempt = record_delivery(
            session,
            job_id,
            url=url,
            status_code=result.status_code,
            error=result.error,
            duration_s=result.duration_s,
        )
    answer = str(result.status_code) if result.status_code is not None else str(result.error)
    if is_success(result.status_code):
        logger.info("job %s: webhook delivered (attempt %s, %s)", job_id, attempt, answer)
        return Delivery(job_id, "delivered", attempt, answer)
    if not is_retryable(result.status_code):
        logger.warning("job %s: webhook rejected with %s; not retried", job_id, answer)
        return Delivery(job_id, "rejected", attempt, answer)
    if attempt >= settings.max_attempts:
        logger.error("job %s: webhook not delivered after %s attempts: %s", job_id, attempt, answer)
        return Delivery(job_id, "exhausted", attempt, answer)
    return Delivery(job_id, "retry", attempt, answer)


@app.task(name=DELIVER_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def deliver_webhook(self: Any, job_id: int) -> dict[str, Any]:
    settings = get_service_settings().webhooks
    try:
        outcome = run_delivery(job_id)
    except OperationalError as exc:
        if self.request.retries + 1 >= settings.max_attempts:
            logger.error("job %s: webhook abandoned, database unavailable: %s", job_id, exc)
            return Delivery(job_id, "exhausted", detail="database unavailable").to_dict()
        raise self.retry(exc=exc, countdown=backoff_s(self.request.retries + 1, settings)) from exc
    if outcome.status == "retry":
        delay = backoff_s(outcome.attempt, settings)
        logger.warning(
            "job %s: webhook attempt %s failed (%s), retry in %.1fs",
            job_id,
            outcome.attempt,
            outcome.detail,
            delay,
        )
        raise self.retry(countdown=delay)
    return outcome.to_dict()


def enqueue_webhook(job_id: int) -> None:
    """Ask for a delivery; a broker error is logged, never fails the detect task that asked."""
    try:
        deliver_webhook.apply_async(args=[job_id], queue=get_service_settings().webhooks_queue)
    except Exception:
        logger.exception("job %s: could not enqueue its webhook", job_id)


def wants_webhook(metadata: dict[str, Any] | None, callback_url: str | None) -> bool:
    if callback_url:
        return True
    return callback_url_for(metadata or {}, get_service_settings().webhooks.callers) is not None


@task_success.connect
def after_detect(sender: Any = None, result: Any = None, **_: Any) -> None:
    """Once detect_media returns a final verdict (done or failed) for a job with a callback, deliver it."""
    if getattr(sender, "name", None) != "dfw.detect_media" or not isinstance(result, dict):
        return
    job_id = result.get("job_id")
    if job_id is None or result.get("status") not in ("done", "failed"):
        return
    request = getattr(sender, "request", None)
    args = list(getattr(request, "args", None) or [])
    kwargs = dict(getattr(request, "kwargs", None) or {})
    metadata = kwargs.get("metadata", args[3] if len(args) > 3 else None)
    callback_url = kwargs.get("callback_url", args[4] if len(args) > 4 else None)
    if wants_webhook(metadata, callback_url):
        enqueue_webhook(int(job_id))
