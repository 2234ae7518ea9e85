"""The reviewer page through FastAPI's TestClient, on the real Postgres and the loopback S3 endpoint.

Rows are written with the storage functions, as the detect task writes them; the video's face boxes come
from the real YuNet face detector on the frames the page re-samples.
"""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import update

from storage.db import session_factory, transaction
from storage.jobs import claim_job, find_or_create_job, finish_job
from storage.queries import find_jobs, flagged
from storage.results import replace_results, upsert_explanation, upsert_media, upsert_object
from storage.schema import Job
from storage.settings import StorageSettings
from tasks.review.app import create_app
from tasks.review.settings import ReviewSettings
from tests.conftest import run_cli
from tests.integration.test_storage import INFO, results

pytestmark = pytest.mark.integration

VIDEO = "fake/ffpp_video/ffpp_Deepfakes_519_515.mp4"
FRAMES_PER_VIDEO = 6
HOSTILE = 'The face looks blended. <script>alert("owned")</script> <b>bold</b>'


@dataclass
class StoredVideo:
    job_id: int
    frames: list  # worker.media.Frame, as the test decoded them
    faces: int
    tracks: int


def past_window() -> tuple[datetime, datetime]:
    """A day long ago that no other test uses: finished_at of this test's jobs is set inside it."""
    start = datetime(2001, 1, 1, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 3000)
    return start, start + timedelta(days=1)


def window_query(window: tuple[datetime, datetime], **params: str) -> str:
    query = {"since": window[0].isoformat(), "until": window[1].isoformat(), **params}
    return "/?" + "&".join(f"{k}={v}".replace("+", "%2B") for k, v in query.items())


def store_job(
    factory, rows: dict, *, key: str, sha256: str, info: dict, finished_at: datetime | None = None, **job
) -> int:
    """Media, object and job rows, results, the job marked done (at `finished_at` when given)."""
    with transaction(factory) as session:
        media_id = upsert_media(session, sha256, info)
        upsert_object(
            session,
            bucket=job.get("bucket", "b"),
            key=key,
            etag=None,
            size=info["size_bytes"],
            media_id=media_id,
            caller_metadata={},
        )
        ref = find_or_create_job(
            session,
            media_id=media_id,
            bucket=job.get("bucket", "b"),
            key=key,
            pipeline_version="1.review-test",
            lineage=job.get("lineage"),
        )
        claim_job(session, ref.id, "w", 60, 5)
        replace_results(session, ref.id, **rows)
        finish_job(session, ref.id, {"decode": 0.1}, job.get("method", "image"))
        if finished_at is not None:
            session.execute(update(Job).where(Job.id == ref.id).values(finished_at=finished_at))
    return ref.id


def simple_job(factory, score: float, label: str, finished_at: datetime, detector: str = "meso4") -> int:
    rows = results(score, label)
    if detector != "meso4":
        rows["verdict"]["detectors"] = {detector: score}
    digest = uuid.uuid4().hex * 2
    return store_job(
        factory, rows, key=f"{digest[:8]}.jpg", sha256=digest, info=INFO, finished_at=finished_at
    )


def video_rows(frames: list, faces_by_frame: list) -> dict:
    """Result rows for real frames and YuNet faces: track 0 drifts from 0.55 to 0.95, others stay low."""
    face_rows, frame_rows, frame_scores = [], [], []
    for position, (frame, faces) in enumerate(zip(frames, faces_by_frame, strict=True)):
        frame_rows.append(
            {
                "frame_index": frame.index,
                "timestamp_s": frame.timestamp_s,
                "width": frame.image.shape[1],
                "height": frame.image.shape[0],
                "faces": len(faces),
            }
        )
        frame_scores.append(
            {
                "frame_index": frame.index,
                "timestamp_s": frame.timestamp_s,
                "detector": "clip_linear",
                "detector_version": "clip_linear/2@feedbeef",
                "weights": {"univfd_fc_weights.pth": "beef"},
                "sampling": {"frames_requested": len(frames)},
                "score": 0.3 + 0.05 * position,
            }
        )
        for face in faces:
            score = 0.55 + 0.4 * position / max(1, len(frames) - 1) if face.track_id == 0 else 0.2
            x, y, w, h = face.box
            face_rows.append(
                {
                    "frame_index": frame.index,
                    "face_index": face.face_index,
                    "timestamp_s": frame.timestamp_s,
                    "track_id": face.track_id,
                    "box_x": x,
                    "box_y": y,
                    "box_w": w,
                    "box_h": h,
                    "face_confidence": face.confidence,
                    "detector": "meso4",
                    "detector_version": "meso4/1@0123abcd",
                    "weights": {"Meso4_DF.h5": "abc"},
                    "sampling": {"frames_requested": len(frames)},
                    "score": score,
                }
            )
    return {"frames": frame_rows, "face_scores": face_rows, "frame_scores": frame_scores}


def store_video(factory, s3_client, bucket: str, dev_dir: Path, models_dir: Path, finished_at: datetime):
    """Upload a real video, sample it as the worker does, find faces with YuNet, store a fake verdict."""
    from worker.faces.tracking import assign_tracks
    from worker.faces.yunet import YuNetFaceDetector
    from worker.media import probe_media, sample_frames
    from worker.models import ModelStore
    from worker.settings import FaceConfig, MediaLimits

    path = dev_dir / VIDEO
    key = f"uploads/{uuid.uuid4().hex[:6]}/{path.name}"
    s3_client.upload_file(str(path), bucket, key)
    info = probe_media(path, MediaLimits())
    sample = sample_frames(path, info, MediaLimits(), FRAMES_PER_VIDEO)
    detector = YuNetFaceDetector(FaceConfig(), ModelStore(models_dir, allow_fetch=False))
    faces_by_frame = [detector.detect(f.image, f.index, f.timestamp_s) for f in sample.frames]
    tracks = assign_tracks(faces_by_frame, 0.3)
    rows = video_rows(sample.frames, faces_by_frame)
    faces = len(rows["face_scores"])
    rows["tracks"] = [
        {
            "track_id": t,
            "faces": sum(1 for r in rows["face_scores"] if r["track_id"] == t),
            "first_frame": min(r["frame_index"] for r in rows["face_scores"] if r["track_id"] == t),
            "last_frame": max(r["frame_index"] for r in rows["face_scores"] if r["track_id"] == t),
            "score": 0.75 if t == 0 else 0.2,
            "detectors": {"meso4": 0.75 if t == 0 else 0.2},
            "counted": True,
        }
        for t in range(tracks)
    ]
    rows["verdict"] = {
        "label": "fake",
        "score": 0.75,
        "threshold": 0.5,
        "policy": "max_track_mean/2",
        "detectors": {"meso4": 0.75, "clip_linear": 0.42},
        "frames_requested": sample.requested,
        "frames_decoded": sample.decoded,
        "faces": faces,
        "tracks": tracks,
    }
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    job_id = store_job(
        factory,
        rows,
        key=key,
        sha256=digest,
        info=info.to_dict(),
        finished_at=finished_at,
        bucket=bucket,
        lineage={"sampling": {"frames_per_video": FRAMES_PER_VIDEO}},
        method=sample.method,
    )
    with transaction(factory) as session:
        upsert_explanation(
            session,
            job_id,
            {
                "explainer": "lvlm_http",
                "model": "test-lvlm",
                "text": HOSTILE,
                "answer": "fake",
                "agrees": True,
            }
            | {"latency_s": 0.5},
        )
    return StoredVideo(job_id, sample.frames, faces, tracks)


@pytest.fixture
def factory(postgres_url: str):
    return session_factory(postgres_url)


@pytest.fixture
def client(postgres_url: str, s3_endpoint: str):
    storage = StorageSettings(database_url=postgres_url, s3_endpoint_url=s3_endpoint, s3_region="us-east-1")
    settings = ReviewSettings(page_size=3, frames_shown=4)
    with TestClient(create_app(settings, storage)) as test_client:
        yield test_client


@pytest.fixture
def video(factory, s3_client, bucket, dev_dir, models_dir) -> tuple[StoredVideo, tuple[datetime, datetime]]:
    window = past_window()
    return store_video(
        factory, s3_client, bucket, dev_dir, models_dir, window[0] + timedelta(hours=1)
    ), window


def job_ids(html: str) -> list[int]:
    return [int(v) for v in re.findall(r'<tr data-job="(\d+)"', html)]


def test_media_page_shows_frames_boxes_plot_detectors_and_escaped_explanation(client, video) -> None:
    stored, _ = video
    assert stored.faces >= FRAMES_PER_VIDEO - 1 and stored.tracks >= 1  # YuNet finds the face in the clip
    page = client.get(f"/jobs/{stored.job_id}")
    assert page.status_code == 200
    html = page.text
    shown = re.findall(r'<figure data-frame="(\d+)"', html)
    assert len(shown) == 4  # frames_shown caps the 6 sampled frames
    assert "Showing 4 of 6 sampled frames" in html
    boxes = re.findall(
        r'<rect class="face-box" data-track="\d+" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)"', html
    )
    assert len(boxes) >= 3 and all(float(w) > 20 for _, _, w in boxes)
    lines = re.findall(
        r'<g class="series" data-series="([\w-]+)">\s*<polyline class="track-line" points="([^"]+)"', html
    )
    assert {key for key, _ in lines} == {f"track-{t}" for t in range(stored.tracks)} | {"frames"}
    assert all(len(points.split()) >= 1 for _, points in lines)
    assert "meso4/1@0123abcd" in html and "clip_linear/2@feedbeef" in html
    assert "6 of 6 frames decoded" in html
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<script>" not in html and "<b>bold" not in html


def test_frames_endpoint_serves_the_same_pictures_as_jpeg(client, video) -> None:
    stored, _ = video
    html = client.get(f"/jobs/{stored.job_id}").text
    sources = re.findall(r'<img src="(/jobs/\d+/frames/(\d+)\.jpg)"', html)
    assert len(sources) == 4
    decoded = {f.index: f.image for f in stored.frames}
    for url, index in sources:
        reply = client.get(url)
        assert reply.status_code == 200 and reply.headers["content-type"] == "image/jpeg"
        assert reply.content[:2] == b"\xff\xd8"
        served = np.asarray(Image.open(io.BytesIO(reply.content)).convert("RGB"), dtype=np.float32)
        expected = decoded[int(index)]
        assert served.shape == expected.shape  # 640x480 is under frame_long_side: not resized
        assert float(np.abs(served - expected.astype(np.float32)).mean()) < 6.0  # same frame, JPEG noise only
    not_shown = sorted(set(decoded) - {int(index) for _, index in sources})[0]
    assert client.get(f"/jobs/{stored.job_id}/frames/{not_shown}.jpg").status_code == 404
    assert client.get("/jobs/999999999/frames/0.jpg").status_code == 404


def test_list_filters_and_paging(client, factory) -> None:
    window = past_window()
    at = window[0] + timedelta(hours=2)
    fakes = [simple_job(factory, score, "fake", at) for score in (0.91, 0.8, 0.7)]
    uncertain = simple_job(factory, 0.45, "uncertain", at, detector="clip_linear")
    real = simple_job(factory, 0.1, "real", at)
    simple_job(factory, 0.99, "fake", window[1] + timedelta(hours=1))  # outside the window

    first = client.get(window_query(window))
    assert first.status_code == 200
    assert job_ids(first.text) == fakes  # flagged by default, most suspicious first, 3 per page
    assert "1–3 of 4" in first.text and 'rel="next"' in first.text and 'rel="prev"' not in first.text
    second = client.get(window_query(window, page="2"))
    assert job_ids(second.text) == [uncertain] and 'rel="prev"' in second.text
    assert job_ids(client.get(window_query(window, label="real")).text) == [real]
    assert job_ids(client.get(window_query(window, label="uncertain")).text) == [uncertain]
    assert job_ids(client.get(window_query(window, min_score="0.75", max_score="0.95")).text) == fakes[:2]
    assert job_ids(client.get(window_query(window, detector="clip_linear")).text) == [uncertain]
    assert job_ids(client.get(window_query(window, label="all", page="2")).text) == [uncertain, real]

    client.post(f"/jobs/{fakes[1]}/reviews", data={"decision": "unsure", "reviewer": "ann"})
    assert job_ids(client.get(window_query(window, reviewed="yes")).text) == [fakes[1]]
    assert job_ids(client.get(window_query(window, reviewed="no")).text) == [fakes[0], fakes[2], uncertain]

    bad = client.get(window_query(window, min_score="abc", label="nope"))
    assert bad.status_code == 400
    assert "min score: &#39;abc&#39; is not a number between 0 and 1" in bad.text and "label:" in bad.text
    assert client.get(window_query(window, min_score="0.9", max_score="0.1")).status_code == 400
    assert client.get("/?since=yesterday").status_code == 400


def test_decision_overrides_the_model_everywhere(client, factory, postgres_url) -> None:
    window = past_window()
    at = window[0] + timedelta(hours=3)
    fake, model_real = simple_job(factory, 0.88, "fake", at), simple_job(factory, 0.2, "real", at)

    posted = client.post(
        f"/jobs/{fake}/reviews",
        data={"decision": "real", "reviewer": "Rita <QA>", "note": "original footage, <i>checked</i>"},
        follow_redirects=False,
    )
    assert posted.status_code == 303 and posted.headers["location"].startswith(f"/jobs/{fake}?recorded=")
    page = client.get(posted.headers["location"])  # the redirect target (PRG)
    assert "Decision recorded." in page.text and "Rita &lt;QA&gt;" in page.text
    assert "original footage, &lt;i&gt;checked&lt;/i&gt;" in page.text
    assert 'data-effective-label="real"' in page.text
    assert 'value="Rita &lt;QA&gt;"' in client.get(f"/jobs/{model_real}").text  # the name is remembered
    with session_factory(postgres_url)() as session:
        (job,) = find_jobs(session, str(fake))
        assert job["review"]["decision"] == "real" and job["review"]["model_label"] == "fake"
        assert job["effective_label"] == "real" and job["verdict"]["label"] == "fake"
        assert fake not in [j["job_id"] for j in flagged(session, window[0], limit=10000)]
    assert fake not in job_ids(client.get(window_query(window)).text)
    assert job_ids(client.get(window_query(window, label="real", reviewed="yes")).text) == [fake]

    client.post(f"/jobs/{fake}/reviews", data={"decision": "unsure", "reviewer": "Rita"})
    client.post(f"/jobs/{model_real}/reviews", data={"decision": "fake", "reviewer": "Sam"})
    with session_factory(postgres_url)() as session:
        recent = {j["job_id"]: j for j in flagged(session, window[0], limit=10000)}
    assert recent[fake]["effective_label"] == "fake" and recent[fake]["review"]["decision"] == "unsure"
    assert (
        recent[model_real]["effective_label"] == "fake" and recent[model_real]["verdict"]["label"] == "real"
    )
    assert job_ids(client.get(window_query(window)).text) == [fake, model_real]

    shown = run_cli(
        "flagged",
        "--since",
        window[0].isoformat(),
        "--limit",
        "10000",
        env={"DFW_DATABASE_URL": postgres_url},
    )
    assert shown.returncode == 0, shown.stderr
    line = next(row for row in shown.stdout.splitlines() if f"│ {model_real} " in row)
    assert "confirmed fake by Sam" in line


def test_invalid_review_form_is_a_400_and_nothing_is_stored(client, factory, postgres_url) -> None:
    job = simple_job(factory, 0.77, "fake", datetime.now(UTC))
    cases = [
        ({"decision": "maybe", "reviewer": "ann"}, "decision must be one of fake, real, unsure"),
        ({"decision": "real", "reviewer": "  "}, "reviewer name is required"),
        (
            {"decision": "real", "reviewer": "ann", "note": "x" * 2001},
            "note is 2001 characters; the limit is 2000",
        ),
        ({}, "decision must be one of"),
    ]
    for form, message in cases:
        reply = client.post(f"/jobs/{job}/reviews", data=form, follow_redirects=False)
        assert reply.status_code == 400, form
        assert message in reply.text and 'id="form-errors"' in reply.text
    kept = client.post(f"/jobs/{job}/reviews", data={"decision": "fake", "reviewer": "", "note": "keep me"})
    assert kept.status_code == 400 and ">keep me</textarea>" in kept.text  # the reviewer's note is not lost
    missing = client.post("/jobs/999999999/reviews", data={"decision": "fake", "reviewer": "ann"})
    assert missing.status_code == 404
    assert client.get("/jobs/999999999").status_code == 404
    assert client.get("/jobs/not-a-number").status_code == 400
    with session_factory(postgres_url)() as session:
        assert find_jobs(session, str(job))[0]["review"] is None
