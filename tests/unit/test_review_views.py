"""The reviewer page's pure parts: filter parsing, frame picking, plot geometry, the effective label."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from storage.queries import effective_label
from storage.reviews import ReviewError, validate_review
from tasks.review.filters import FilterError, ListQuery, parse_list_query
from tasks.review.frames import FrameCache, pick_frames
from tasks.review.plot import score_plot
from tasks.review.views import face_boxes


def test_effective_label_lets_a_reviewer_override_except_when_unsure() -> None:
    assert effective_label("fake", "real") == "real"
    assert effective_label("real", "fake") == "fake"
    assert effective_label("uncertain", "unsure") == "uncertain"
    assert effective_label("fake", None) == "fake"


def test_review_validation_names_every_problem() -> None:
    assert validate_review(" Real ", " ann ", "ok\r\n") == ("real", "ann", "ok")
    with pytest.raises(ReviewError) as caught:
        validate_review("maybe", "", "x" * 2001)
    assert len(caught.value.problems) == 3


def test_list_query_defaults_and_errors() -> None:
    query, filters = parse_list_query({}, "7d")
    assert query == ListQuery(since="7d") and filters.labels == ("fake", "uncertain")
    assert filters.since is not None and filters.until is None and filters.reviewed is None
    query, filters = parse_list_query(
        {"since": "", "until": "2026-01-02", "label": "real", "reviewed": "no", "page": "3"}, "7d"
    )
    assert filters.since is None and filters.until == datetime(2026, 1, 2, tzinfo=UTC)
    assert filters.labels == ("real",) and filters.reviewed is False and query.page == 3
    assert query.url(4) == "/?since=&until=2026-01-02&label=real&reviewed=no&page=4"
    with pytest.raises(FilterError, match=r"page: '0'.*max score: '2'.*detector"):
        parse_list_query({"page": "0", "max_score": "2", "detector": "x;drop"}, "7d")


def test_pick_frames_spreads_over_the_sample() -> None:
    frames = [{"frame_index": i} for i in range(16)]
    assert [f["frame_index"] for f in pick_frames(frames, 4)] == [0, 5, 10, 15]
    assert pick_frames(frames[:3], 8) == frames[:3]
    assert pick_frames(frames, 1) == frames[:1]


def face(frame: int, track: int, score: float, detector: str = "meso4") -> dict:
    return {
        "frame_index": frame,
        "face_index": track,
        "timestamp_s": frame / 10,
        "track_id": track,
        "box": [1.0, 2.0, 30.0, 40.0],
        "detector": detector,
        "detector_version": f"{detector}/1",
        "score": score,
    }


def test_plot_has_one_series_per_track_inside_the_box() -> None:
    faces = [face(0, 0, 0.2), face(0, 0, 0.4, "other"), face(10, 0, 0.9), face(10, 1, 0.1)]
    plot = score_plot(faces, [], threshold=0.5, duration_s=2.0)
    assert [s.key for s in plot.series] == ["track-0", "track-1"]
    first, second = plot.series[0].points
    assert first.score == pytest.approx(0.3) and second.score == pytest.approx(0.9)  # mean over detectors
    assert first.x == plot.left and second.x == pytest.approx((plot.left + plot.right) / 2)
    assert plot.top <= second.y < plot.threshold_y < first.y <= plot.bottom
    image = score_plot([face(0, 0, 0.7)], [], threshold=0.5, duration_s=None)
    assert image.series[0].points[0].x == pytest.approx((image.left + image.right) / 2)


def test_face_boxes_merge_detectors_per_face() -> None:
    boxes = face_boxes([face(3, 0, 0.2), face(3, 0, 0.6, "other"), face(3, 1, 0.5)])
    assert [(b.track_id, round(b.score, 2)) for b in boxes[3]] == [(0, 0.4), (1, 0.5)]
    assert boxes[3][0].color != boxes[3][1].color


def test_frame_cache_loads_once_under_concurrent_requests() -> None:
    cache = FrameCache(capacity=1)
    calls = []

    def load() -> dict[int, bytes]:
        calls.append(1)
        return {0: b"jpeg"}

    threads = [threading.Thread(target=cache.get, args=(7, load)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    cache.get(8, load)  # evicts 7
    cache.get(7, load)
    assert len(calls) == 3
