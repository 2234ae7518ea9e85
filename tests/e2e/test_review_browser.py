"""`dfw review` as a real process, driven by headless Chromium (Debian's, through Playwright's sync API),
against the real Postgres and the loopback S3 endpoint: list, media page, plot and boxes, a decision."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from storage.db import session_factory
from tests.conftest import REPO, free_port
from tests.integration.test_review import past_window, store_video

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture
def review_server(postgres_url: str, s3_endpoint: str, tmp_path: Path) -> Iterator[str]:
    """`dfw review --host 127.0.0.1 --port N` in its own process; its base URL once /healthz answers."""
    port = free_port()
    env = {
        **os.environ,
        "DFW_DATABASE_URL": postgres_url,
        "DFW_S3_ENDPOINT_URL": s3_endpoint,
        "DFW_S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "DFW_TMP_DIR": str(tmp_path),
        "DFW_REVIEW_FRAMES_SHOWN": "4",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    log = tmp_path / "review.log"
    with log.open("wb") as sink:
        command = [sys.executable, "-m", "tasks.cli", "review", "--host", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base, process, log)
            yield base
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_up(base: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dfw review exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"dfw review did not answer within {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def test_reviewer_records_a_decision_in_the_browser(
    review_server, browser, postgres_url, s3_client, bucket, dev_dir, models_dir, tmp_path
) -> None:
    window = past_window()
    factory = session_factory(postgres_url)
    stored = store_video(factory, s3_client, bucket, dev_dir, models_dir, window[0] + timedelta(hours=1))
    listing = f"{review_server}/?since={window[0].date()}&until={window[1].date()}"
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    page.goto(listing)
    row = page.locator(f'tr[data-job="{stored.job_id}"]')
    assert row.count() == 1 and "not reviewed" in row.inner_text()
    row.locator("a").first.click()
    page.wait_for_url(f"**/jobs/{stored.job_id}")

    # every shown frame decoded as a JPEG in the browser, with its face boxes drawn over it
    page.wait_for_function(
        "() => [...document.querySelectorAll('.frame-view img')]"
        ".every(img => img.complete && img.naturalWidth > 0)",
        timeout=60_000,
    )
    assert page.locator(".frame-view img").count() == 4
    boxes = page.locator("rect.face-box")
    assert boxes.count() >= 3
    for index in range(boxes.count()):
        box = boxes.nth(index).bounding_box()
        assert box and box["width"] > 5 and box["height"] > 5
    # one line per track (and one for the whole-frame detector), each drawn with a visible extent
    lines = page.locator("svg#score-plot polyline.track-line")
    assert lines.count() == stored.tracks + 1
    for index in range(lines.count()):
        extent = lines.nth(index).bounding_box()
        assert extent and extent["width"] > 100
    assert '<script>alert("owned")</script>' in page.locator("#explanation").inner_text()
    assert "meso4/1@0123abcd" in page.locator("#detectors").inner_text()
    page.screenshot(path=str(tmp_path / "media-page.png"), full_page=True)

    page.check('input[name="decision"][value="real"]')
    page.fill('input[name="reviewer"]', "Rita")
    page.fill('textarea[name="note"]', "Original broadcast footage.")
    page.click('button[type="submit"]')
    page.wait_for_url(f"**/jobs/{stored.job_id}?recorded=*")
    assert "Decision recorded." in page.locator(".flash.ok").inner_text()
    assert page.locator("#verdict .label").get_attribute("data-effective-label") == "real"

    page.goto(listing)
    assert page.locator(f'tr[data-job="{stored.job_id}"]').count() == 0  # gone from the flagged list
    page.goto(f"{listing}&label=real&reviewed=yes")
    reviewed = page.locator(f'tr[data-job="{stored.job_id}"]')
    assert reviewed.count() == 1 and "marked real" in reviewed.inner_text()
    assert "Rita" in reviewed.inner_text()
