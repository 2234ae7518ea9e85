"""Webhook signatures, callback URL resolution, retry classification and the payload (no services)."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys

from storage.webhooks import is_retryable, is_success
from tasks.settings import ServiceSettings, WebhookSettings
from tasks.webhooks import (
    CALLBACK_KEY,
    backoff_s,
    callback_url_for,
    payload,
    signature,
    verify_signature,
    with_callback,
)
from tests.conftest import REPO

SECRET = "s3cret"
BODY = b'{"job_id":1,"label":"fake"}'
NOW = 1_800_000_000.0


def test_signature_round_trip() -> None:
    ts = str(int(NOW))
    sig = signature(SECRET, ts, BODY)
    expected = hmac.new(SECRET.encode(), f"{ts}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sig == f"sha256={expected}"
    assert verify_signature(SECRET, ts, BODY, sig, now=NOW + 10, window=300)


def test_tampered_body_wrong_secret_and_stale_timestamp_are_rejected() -> None:
    ts = str(int(NOW))
    sig = signature(SECRET, ts, BODY)
    assert not verify_signature(SECRET, ts, BODY.replace(b"fake", b"real"), sig, now=NOW, window=300)
    assert not verify_signature("other", ts, BODY, sig, now=NOW, window=300)
    assert not verify_signature(SECRET, ts, BODY, sig, now=NOW + 301, window=300)  # a replay
    assert not verify_signature(SECRET, str(int(NOW) + 1), BODY, sig, now=NOW, window=300)  # moved timestamp
    assert not verify_signature(SECRET, "not-a-number", BODY, sig, now=NOW, window=300)
    assert not verify_signature(SECRET, ts, BODY, "sha256=" + "0" * 64, now=NOW, window=300)


def test_callback_url_explicit_wins_over_caller_setting() -> None:
    callers = {"uploads-svc": "https://uploads.example/hook"}
    assert callback_url_for({"caller": "uploads-svc"}, callers) == "https://uploads.example/hook"
    assert callback_url_for({"caller": "other"}, callers) is None
    explicit = with_callback({"caller": "uploads-svc"}, "https://mine.example/cb")
    assert explicit[CALLBACK_KEY] == "https://mine.example/cb"
    assert callback_url_for(explicit, callers) == "https://mine.example/cb"
    assert with_callback(None, None) == {}


def test_settings_from_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DFW_WEBHOOKS__CALLERS", '{"uploads-svc": "https://uploads.example/hook"}')
    monkeypatch.setenv("DFW_WEBHOOKS__SECRET", "abc")
    monkeypatch.setenv("DFW_WEBHOOKS_QUEUE", "hooks")
    settings = ServiceSettings()
    assert settings.webhooks.callers == {"uploads-svc": "https://uploads.example/hook"}
    assert settings.webhooks.secret.get_secret_value() == "abc" and "abc" not in repr(settings)
    assert settings.webhooks_queue == "hooks"


def test_retry_classification_and_backoff() -> None:
    assert is_success(200) and is_success(204) and not is_success(None) and not is_success(500)
    assert all(is_retryable(code) for code in (None, 429, 500, 502, 503))
    assert not any(is_retryable(code) for code in (301, 400, 401, 404, 410))
    settings = WebhookSettings(backoff_s=1.0, backoff_max_s=10.0)
    for attempt, cap in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 10.0)):
        assert cap / 2 <= backoff_s(attempt, settings) <= cap


def test_payload_hides_the_reserved_key() -> None:
    verdict = {
        "job_id": 7,
        "status": "done",
        "pipeline_version": "p1",
        "bucket": "b",
        "key": "k",
        "media_sha256": "a" * 64,
        "caller_metadata": {"upload_id": "u-1", CALLBACK_KEY: "https://x"},
        "label": "real",
        "score": 0.1,
        "threshold": 0.5,
        "coverage": {"frames_requested": 1, "frames": 1, "faces": 1, "tracks": 1},
        "explanation": None,
        "error_code": None,
        "finished_at": None,
    }
    body = payload(verdict)
    assert body["metadata"] == {"upload_id": "u-1"} and body["job_id"] == 7 and body["label"] == "real"


def test_webhooks_module_is_torch_free() -> None:
    code = "import sys, tasks.webhooks, storage.webhooks; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "False"


def test_final_detect_outcomes_enqueue_a_delivery(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import tasks.webhooks as webhooks

    sent: list[int] = []
    monkeypatch.setattr(webhooks, "enqueue_webhook", sent.append)

    from types import SimpleNamespace

    request = SimpleNamespace(args=[], kwargs={"bucket": "b", "key": "k", "callback_url": "https://x/cb"})
    sender = SimpleNamespace(name="dfw.detect_media", request=request)
    for result in (
        {"job_id": 1, "status": "done"},
        {"job_id": 2, "status": "failed"},
        {"job_id": None, "status": "duplicate"},
        {"job_id": 3, "status": "running"},
    ):
        webhooks.after_detect(sender=sender, result=result)
    request.kwargs = {"bucket": "b", "key": "k", "metadata": {"upload_id": "u"}}  # no callback at all
    webhooks.after_detect(sender=sender, result={"job_id": 4, "status": "done"})
    assert sent == [1, 2]
