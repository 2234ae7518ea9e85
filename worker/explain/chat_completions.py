"""The `lvlm_http` explainer: an OpenAI-compatible `POST {base_url}/chat/completions` with image input.

Standard library only (urllib.request, json, base64). One user message: the evidence images as
`{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}` parts (the `max_images` most
suspicious, highest score first, downscaled to `max_image_side`, JPEG at `jpeg_quality`), then one text part
(the score summary and `SEED_QUESTION`, see `worker.explain.prompts`); `model`, `max_tokens`,
`temperature: 0`. `Authorization: Bearer <api_key>` when a key is set; the key is never logged nor put in
an error message.

Retry policy. Up to `1 + retries` attempts. Retried: connection errors, timeouts (`timeout_s` bounds the
connect and each read), HTTP 429 and 5xx. The wait before attempt n+1 is the server's `Retry-After`
(seconds or an HTTP date) when present, else `backoff_s * 2**(n-1)` scaled by a random factor in
[0.5, 1) (jitter); both capped at `max_backoff_s`. Not retried: other 4xx (the request itself is wrong),
redirects (never followed: the Bearer token must not travel to another URL), and a 2xx whose body is not
chat-completions JSON. Every failure ends in `ExplainerUnavailable`, with `transient` telling whether a
later try may help. A model's odd answer is never an error: it is stored.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import io
import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, NoReturn

from worker.aggregate import Verdict
from worker.explain.answers import parse_answer
from worker.explain.base import Evidence, Explainer, Explanation, agreement
from worker.explain.errors import ExplainerUnavailable
from worker.explain.lvlm_http import LvlmHttpConfig
from worker.explain.prompts import NO_EVIDENCE_TEXT, build_question, evidence_image, images_to_show
from worker.media import MediaInfo

logger = logging.getLogger(__name__)

EXPLAINER_NAME = "lvlm_http"
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
ERROR_SNIPPET_CHARS = 200


class RetryableFailure(Exception):
    """One attempt failed in a way that another attempt may fix."""

    def __init__(self, reason: str, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s


class RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error (HTTPError 3xx): following it would send the Bearer token to another URL."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


OPENER = urllib.request.build_opener(RefuseRedirects())


class HttpLvlmExplainer(Explainer):
    name: ClassVar[str] = EXPLAINER_NAME
    needs_images: ClassVar[bool] = True  # sends the evidence crops or frames

    def __init__(self, config: LvlmHttpConfig, rng: random.Random | None = None) -> None:
        super().__init__(config)
        self.config: LvlmHttpConfig = config
        self.rng = rng or random.Random()
        self.sleep: Callable[[float], None] = time.sleep  # tests record the waits instead

    def load(self) -> None:
        """Nothing to load; checks that the endpoint and model are configured."""
        self.endpoint()
        if not self.config.model:
            raise ExplainerUnavailable(
                EXPLAINER_NAME,
                "set DFW_EXPLAIN__LVLM_HTTP__MODEL to the server's model name",
                transient=False,
            )

    def endpoint(self) -> str:
        base = self.config.base_url
        if not base:
            raise ExplainerUnavailable(
                EXPLAINER_NAME,
                "set DFW_EXPLAIN__LVLM_HTTP__BASE_URL (e.g. http://lvlm:8000/v1)",
                transient=False,
            )
        parts = urllib.parse.urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ExplainerUnavailable(
                EXPLAINER_NAME, "base_url must be an http:// or https:// URL", transient=False
            )
        return base.rstrip("/") + "/chat/completions"

    def explain(self, media: MediaInfo, verdict: Verdict, evidence: list[Evidence]) -> Explanation:
        self.load()
        shown = images_to_show(evidence, self.config.max_images)
        if not shown:
            return Explanation(explainer=self.name, text=NO_EVIDENCE_TEXT, model=self.config.model)
        question = build_question(media, verdict, shown)
        images = [self.jpeg_data_url(item) for item in shown]
        started = time.perf_counter()
        reply = self.post(request_body(str(self.config.model), question, images, self.config.max_tokens))
        latency = time.perf_counter() - started
        text = reply_text(reply)
        answer = parse_answer(text)
        return Explanation(
            explainer=self.name,
            text=text,
            model=self.config.model,
            revision=reply_revision(reply, str(self.config.model)),
            prompt=question,
            answer=answer,
            agrees=agreement(answer, verdict),
            latency_s=latency,
        )

    def jpeg_data_url(self, item: Evidence) -> str:
        image = evidence_image(item)
        side = self.config.max_image_side
        if max(image.size) > side:
            image.thumbnail((side, side))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=self.config.jpeg_quality)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

    # --- transport --------------------------------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key is not None:
            headers["Authorization"] = f"Bearer {self.config.api_key.get_secret_value()}"
        return headers

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """The server's JSON reply, after up to `1 + retries` attempts."""
        url = self.endpoint()
        data = json.dumps(body).encode("utf-8")
        attempts = 1 + self.config.retries
        for attempt in range(1, attempts + 1):
            try:
                return self.send(url, data, attempt)
            except RetryableFailure as failure:
                if attempt == attempts:
                    raise ExplainerUnavailable(
                        EXPLAINER_NAME,
                        f"{failure.reason} from {safe_url(url)}",
                        transient=True,
                        status=failure.status,
                        attempts=attempt,
                    ) from None
                delay = retry_delay(
                    attempt, self.config.backoff_s, self.config.max_backoff_s, failure.retry_after_s, self.rng
                )
                logger.warning(
                    "lvlm_http attempt %d/%d failed (%s); retrying in %.2f s",
                    attempt,
                    attempts,
                    failure.reason,
                    delay,
                )
                self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def send(self, url: str, data: bytes, attempt: int) -> dict[str, Any]:
        request = urllib.request.Request(url, data=data, headers=self.headers(), method="POST")
        try:
            with OPENER.open(request, timeout=self.config.timeout_s) as response:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as error:
            self.raise_for_status(error, url, attempt)
        except TimeoutError:
            raise RetryableFailure(f"timed out after {self.config.timeout_s:g} s") from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise RetryableFailure(f"timed out after {self.config.timeout_s:g} s") from None
            raise RetryableFailure(f"connection failed: {error.reason}") from None
        except (OSError, http.client.HTTPException) as error:
            raise RetryableFailure(f"connection failed: {type(error).__name__}: {error}") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise ExplainerUnavailable(
                EXPLAINER_NAME,
                f"response larger than {MAX_RESPONSE_BYTES} bytes",
                transient=False,
                attempts=attempt,
            )
        return parse_reply(raw, attempt)

    def raise_for_status(self, error: urllib.error.HTTPError, url: str, attempt: int) -> NoReturn:
        status = error.code
        retry_after = parse_retry_after(error.headers.get("Retry-After") if error.headers else None)
        snippet = error_snippet(error)
        if status == 429 or 500 <= status <= 599:
            raise RetryableFailure(f"HTTP {status}", status, retry_after) from None
        raise ExplainerUnavailable(
            EXPLAINER_NAME,
            f"HTTP {status} from {safe_url(url)}: {snippet}",
            transient=False,
            status=status,
            attempts=attempt,
        ) from None


# --- request and reply ------------------------------------------------------------------------------------


def request_body(model: str, question: str, image_urls: list[str], max_tokens: int) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}} for url in image_urls]
    content.append({"type": "text", "text": question})
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": False,
    }


def parse_reply(raw: bytes, attempt: int) -> dict[str, Any]:
    try:
        reply = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        reply = None
    if not isinstance(reply, dict) or not isinstance(reply.get("choices"), list) or not reply["choices"]:
        raise ExplainerUnavailable(
            EXPLAINER_NAME,
            "response is not a chat completion (no choices)",
            transient=False,
            attempts=attempt,
        )
    return reply


def reply_text(reply: dict[str, Any]) -> str:
    """The first choice's message text, stripped; '' when the model said nothing."""
    choice = reply["choices"][0]
    message = choice.get("message") if isinstance(choice, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        ]
        return " ".join(texts).strip()
    return ""


def reply_revision(reply: dict[str, Any], requested: str) -> str | None:
    """The server's `system_fingerprint`, else the model it resolved the name to when that differs."""
    fingerprint = reply.get("system_fingerprint")
    if isinstance(fingerprint, str) and fingerprint:
        return fingerprint[:128]
    served = reply.get("model")
    if isinstance(served, str) and served and served != requested:
        return served[:128]
    return None


# --- retry helpers ----------------------------------------------------------------------------------------


def retry_delay(
    attempt: int, backoff_s: float, max_backoff_s: float, retry_after_s: float | None, rng: random.Random
) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based)."""
    if retry_after_s is not None:
        return min(retry_after_s, max_backoff_s)
    return min(backoff_s * 2 ** (attempt - 1), max_backoff_s) * (0.5 + rng.random() / 2)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def error_snippet(error: urllib.error.HTTPError) -> str:
    try:
        body = error.read(ERROR_SNIPPET_CHARS * 4)
    except (OSError, http.client.HTTPException):
        body = b""
    finally:
        error.close()
    return " ".join(body.decode("utf-8", "replace").split())[:ERROR_SNIPPET_CHARS] or error.reason


def safe_url(url: str) -> str:
    """The URL without user info or query (nothing secret ends up in a message)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


EXPLAINER = HttpLvlmExplainer
