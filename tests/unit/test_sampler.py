"""The frame sampler on real media: keyframe layout, decode methods, cost model, keyframe and second passes.

Synthetic clips are H.264 (B-frames on) with chosen keyframe intervals. The left half of frame i is one flat
colour that spells i (R = 16 + 12 * (i % 16), G = 16 + 12 * (i // 16)); the right half is noise panning one
pixel a frame, so that inter prediction matters and a frame decoded from the wrong references shows it.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import av.video.stream
import numpy as np
import pytest

from worker.media import Frame, FrameSample, probe_media, sample_frames
from worker.media.frames import pick_frame_indices, read_frames, replay_method
from worker.media.layout import PacketFacts, build_layout, probe_layout
from worker.media.plan import (
    DecodeCosts,
    Segment,
    choose_method,
    costs_for,
    decord_batch,
    decord_reads,
    keyframe_weight,
    nearest_keyframes,
    pick_dense_indices,
    plan_segments,
)
from worker.settings import MediaLimits, SamplingConfig, SamplingMethod

LIMITS = MediaLimits()
DEV_ROOT = (
    Path(os.environ.get("DFW_SHARED_DIR") or Path(__file__).resolve().parents[2].parent / "shared")
    / "data/dev"
)
# every dev video; the ffpp_*.mp4 ones are old-x264 4:4:4 streams: a seek needs the first keyframe's SEI
DEV_VIDEOS = sorted(
    str(p.relative_to(DEV_ROOT)) for p in DEV_ROOT.glob("*/*/*") if p.suffix in {".mp4", ".webm", ".avi"}
)
COSTS = DecodeCosts()
READERS: tuple[SamplingMethod, ...] = ("sequential", "seek", "decord")
NOISE = np.random.default_rng(7).integers(0, 256, (48, 400), dtype=np.uint8)


def paint(index: int) -> np.ndarray:
    image = np.empty((48, 64, 3), np.uint8)
    image[:, :32] = (16 + 12 * (index % 16), 16 + 12 * (index // 16), 128)
    image[:, 32:] = NOISE[:, index : index + 32, None]
    return image


def read_index(frame: Frame) -> int:
    red, green = (float(frame.image[8:40, 4:28, channel].mean()) for channel in (0, 1))
    return round((red - 16) / 12) + 16 * round((green - 16) / 12)


def encode_clip(
    path: Path, frames: int, gop: int, stamps: list[int] | None = None, options: dict[str, str] | None = None
) -> Path:
    """H.264 at 30 fps with a keyframe every `gop` frames; `stamps` sets each frame's pts (1/30 s units)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=30)
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
            "crf": "18",
            **(options or {}),
        }
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(paint(index), format="rgb24")
            if stamps is not None:
                frame.pts, frame.time_base = stamps[index], Fraction(1, 30)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sampler")
    variable = np.cumsum([0] + [1 + (i % 3 == 0) for i in range(239)]).tolist()
    return {
        "gop1": encode_clip(folder / "gop1.mp4", 90, 1),
        "gop30": encode_clip(folder / "gop30.mp4", 300, 30),
        "gop250": encode_clip(folder / "gop250.mp4", 300, 250),
        "one_gop": encode_clip(folder / "one_gop.mp4", 120, 600),
        "open_gop": encode_clip(folder / "open.mkv", 240, 30, options={"x264-params": "open-gop=1"}),
        "offset": encode_clip(folder / "offset.mkv", 240, 30, stamps=[45 + i for i in range(240)]),
        "vfr": encode_clip(folder / "vfr.mp4", 240, 30, stamps=variable),
    }


def read_all(path: Path, indices: list[int]) -> dict[str, FrameSample]:
    info = probe_media(path, LIMITS)
    return {method: read_frames(path, info, LIMITS, indices, method=method) for method in READERS}


def assert_same_frames(samples: dict[str, FrameSample], indices: list[int]) -> None:
    reference = samples["sequential"]
    assert [f.index for f in reference.frames] == indices
    for method, sample in samples.items():
        assert [f.index for f in sample.frames] == indices, method
        for ours, theirs in zip(sample.frames, reference.frames, strict=True):
            assert np.array_equal(ours.image, theirs.image), (method, ours.index)
            assert ours.timestamp_s == pytest.approx(theirs.timestamp_s, abs=1e-6)


# ---------------------------------------------------------------- layout


@pytest.mark.parametrize(
    ("name", "frames", "gop"),
    [("gop1", 90, 1), ("gop30", 300, 30), ("gop250", 300, 250), ("one_gop", 120, 600)],
)
def test_layout_finds_the_keyframes(clips: dict[str, Path], name: str, frames: int, gop: int) -> None:
    layout = probe_layout(clips[name], LIMITS)
    assert layout is not None
    assert layout.frame_count == frames and layout.keyframes == tuple(range(0, frames, gop))
    assert layout.exact and layout.decord_safe and not layout.open_gops
    assert [layout.timestamp(i) for i in (0, 1, 30)] == pytest.approx([0, 1 / 30, 1.0])


def test_layout_of_open_gops_offsets_and_variable_rate(clips: dict[str, Path]) -> None:
    open_gop = probe_layout(clips["open_gop"], LIMITS)
    assert open_gop is not None and open_gop.exact and open_gop.open_gops and not open_gop.decord_safe
    assert open_gop.keyframes[:3] == (0, 30, 60)
    offset = probe_layout(clips["offset"], LIMITS)
    assert offset is not None and offset.start_pts == int(offset.pts[0]) > 0 and offset.timestamp(0) == 0.0
    vfr = probe_layout(clips["vfr"], LIMITS)
    assert vfr is not None and vfr.exact and vfr.frame_count == 240
    assert vfr.timestamp(3) == pytest.approx(4 / 30) and vfr.timestamp(4) == pytest.approx(6 / 30)


def test_layout_without_unambiguous_timestamps_is_not_exact() -> None:
    def facts(stamps: list[int | None]) -> list[PacketFacts]:
        return [PacketFacts(pts, keyframe=n == 0, size=10) for n, pts in enumerate(stamps)]

    base = build_layout(facts([0, 2, 1, 3]), Fraction(1, 30), None, complete=True)
    assert (
        base.exact
        and base.pts.tolist() == [0, 1, 2, 3]
        and base.index_of(2) == 2
        and base.index_of(5) is None
    )
    assert not build_layout(facts([0, 1, 1, 3]), Fraction(1, 30), None, complete=True).exact
    assert not build_layout(facts([0, None, 2]), Fraction(1, 30), None, complete=True).exact
    assert not build_layout(facts([0, 1, 2]), Fraction(1, 30), None, complete=False).exact
    empty_packet = [*facts([0, 1]), PacketFacts(None, keyframe=False, size=0)]
    skipped = build_layout(empty_packet, Fraction(1, 30), None, complete=True)
    assert skipped.exact and skipped.frame_count == 2 and not skipped.decord_safe


# ---------------------------------------------------------------- pixel identity


@pytest.mark.parametrize("name", ["gop1", "gop30", "gop250", "open_gop", "offset", "vfr"])
def test_every_method_returns_the_same_pixels(clips: dict[str, Path], name: str) -> None:
    layout = probe_layout(clips[name], LIMITS)
    assert layout is not None
    late = [*layout.keyframes[1:3], layout.frame_count - 1]  # the first frame is not wanted
    for indices in (pick_frame_indices(layout.frame_count, 10), sorted({*late, late[0] + 1})):
        samples = read_all(clips[name], indices)
        assert_same_frames(samples, indices)
        assert [read_index(f) for f in samples["sequential"].frames] == indices
    expected = "pyav-seek" if name == "open_gop" else "decord"  # decord numbers open GOPs its own way
    assert samples["decord"].method == expected and samples["seek"].method == "pyav-seek"


@pytest.mark.parametrize("rel", DEV_VIDEOS)
def test_dev_videos_read_the_same_by_every_method(dev_dir: Path, rel: str) -> None:
    path = dev_dir / rel
    layout = probe_layout(path, LIMITS)
    assert layout is not None and layout.exact
    late = sorted({k + d for k in layout.keyframes[1:] for d in (0, 3)} & set(range(layout.frame_count)))
    for indices in (pick_frame_indices(layout.frame_count, 6), late):
        if indices:
            assert_same_frames(read_all(path, indices), indices)


# ---------------------------------------------------------------- cost model


def test_auto_seeks_short_groups_of_pictures_of_long_videos() -> None:
    indices = pick_frame_indices(1800, 32)
    assert choose_method(range(0, 1800, 30), 1800, indices, COSTS) == "seek"
    assert choose_method(range(0, 1800, 1), 1800, indices, COSTS) == "seek"


def test_auto_decodes_long_groups_of_pictures_in_one_pass() -> None:
    indices = pick_frame_indices(1800, 32)
    assert choose_method([0], 1800, indices, COSTS) == "sequential"
    assert (
        choose_method([0, 900], 1800, pick_frame_indices(1800, 900), COSTS) == "sequential"
    )  # no gap to skip
    cheap_decord = DecodeCosts(decord_frame=0.5)
    assert choose_method([0], 1800, indices, cheap_decord) == "decord"
    assert choose_method([0], 1800, indices, cheap_decord, allowed=("sequential", "seek")) == "sequential"


def test_seek_segments_merge_when_a_seek_costs_more() -> None:
    keyframes = range(0, 300, 10)
    segments = plan_segments(keyframes, [5, 9, 12, 95, 250], COSTS)
    assert segments == [Segment(0, (5, 9, 12)), Segment(90, (95,)), Segment(250, (250,))]
    assert plan_segments(keyframes, [5, 15], COSTS) == [Segment(0, (5, 15))]  # 4 frames cost less than a seek
    assert plan_segments(range(0, 300, 30), [5, 45], COSTS) == [Segment(0, (5,)), Segment(30, (45,))]


def test_expensive_keyframes_make_seeks_expensive() -> None:
    keyframes, indices = range(0, 1800, 30), pick_frame_indices(1800, 90)  # gaps of 9 and 19 frames
    assert choose_method(keyframes, 1800, indices, DecodeCosts(keyframe=3)) == "seek"
    assert choose_method(keyframes, 1800, indices, DecodeCosts(keyframe=40)) == "sequential"
    assert keyframe_weight(50_000, 5_000) == pytest.approx(2.5 * 10**0.6)
    assert (
        keyframe_weight(1_000, 1_000) == 2.5
        and keyframe_weight(9e9, 1) == 50.0
        and keyframe_weight(10, 0) == 1.0
    )
    assert costs_for(50_000, 5_000).keyframe == keyframe_weight(50_000, 5_000)


def test_decord_plan_follows_its_seeking() -> None:
    ranges, seeks = decord_reads([0, 30, 60], [5, 10, 40, 45, 61])
    assert ranges == [(0, 5), (6, 10), (30, 40), (41, 45), (60, 61)] and seeks == 2
    assert decord_batch([0, 30, 60], [40, 45]) == [0, 40, 45]  # frame 0 first: see decord_batch
    assert decord_batch([0, 30, 60], [10, 45]) == [10, 45]


def test_auto_choice_on_files(clips: dict[str, Path]) -> None:
    by_gop = {name: sample_frames(clips[name], probe_media(clips[name], LIMITS), LIMITS, 8) for name in clips}
    assert by_gop["gop1"].method == by_gop["gop30"].method == "pyav-seek"
    assert by_gop["one_gop"].method == "pyav-sequential"
    assert by_gop["gop250"].method == "pyav-sequential"  # skipping frames 245-249 is not worth a seek


# ---------------------------------------------------------------- keyframes and the second pass


def test_keyframe_mode_decodes_only_keyframes(clips: dict[str, Path]) -> None:
    for name in ("gop30", "open_gop"):
        path = clips[name]
        layout = probe_layout(path, LIMITS)
        assert layout is not None
        sample = sample_frames(path, probe_media(path, LIMITS), LIMITS, 6, method="keyframes")
        indices = [f.index for f in sample.frames]
        assert sample.method == "pyav-keyframes" and set(indices) <= set(layout.keyframes)
        assert indices == nearest_keyframes(layout.keyframes, pick_frame_indices(layout.frame_count, 6))
        assert [read_index(f) for f in sample.frames] == indices
        reference = read_frames(path, probe_media(path, LIMITS), LIMITS, indices, method="sequential")
        assert all(
            np.array_equal(a.image, b.image) for a, b in zip(sample.frames, reference.frames, strict=True)
        )


def test_nearest_keyframes() -> None:
    assert nearest_keyframes([0, 30, 60], [14, 15, 16, 59, 200]) == [0, 30, 60]
    assert nearest_keyframes([0], [5, 500]) == [0]


def test_dense_indices_around_the_most_suspicious_frames() -> None:
    first = [10, 30, 50, 70, 90]
    scores = [0.1, 0.9, None, 0.7, 0.2]
    picked = pick_dense_indices(first, scores, 100, extra=6, centres=2)
    assert picked == [24, 31, 37, 64, 71, 77]
    assert all(20 < i <= 40 or 60 < i <= 80 for i in picked) and not set(picked) & set(first)
    assert pick_dense_indices(first, [None] * 5, 100, extra=6) == []
    assert pick_dense_indices([0, 2], [0.5, 0.4], 3, extra=10, centres=1) == [1]
    with pytest.raises(ValueError):
        pick_dense_indices(first, scores[:2], 100, extra=4)


def test_second_pass_reads_the_dense_indices(clips: dict[str, Path]) -> None:
    path = clips["gop30"]
    first = pick_frame_indices(300, 6)
    dense = pick_dense_indices(first, [0.2, 0.3, 0.95, 0.1, 0.4, 0.2], 300, extra=8, centres=1)
    sample = read_frames(path, probe_media(path, LIMITS), LIMITS, [*dense, 999])
    assert [f.index for f in sample.frames] == dense and [read_index(f) for f in sample.frames] == dense


def test_sampling_method_setting() -> None:
    assert SamplingConfig().method == "auto"
    assert SamplingConfig(method="keyframes").method == "keyframes"
    with pytest.raises(ValueError):
        SamplingConfig(method="fastest")  # type: ignore[arg-type]


def test_replay_method_reproduces_a_recorded_sample(clips: dict[str, Path]) -> None:
    path = clips["gop30"]
    info = probe_media(path, LIMITS)
    for recorded in ("pyav-sequential", "decord", "pyav-seek", "pyav-keyframes"):
        first = sample_frames(path, info, LIMITS, 4, method=replay_method(recorded))
        if recorded == "pyav-keyframes":
            assert first.method == "pyav-keyframes"
        keyframes = sample_frames(path, info, LIMITS, 4, method="keyframes")
        exact = sample_frames(path, info, LIMITS, 4, method="sequential")
        expected = keyframes if recorded == "pyav-keyframes" else exact
        assert [f.index for f in first.frames] == [f.index for f in expected.frames]
        assert all(
            np.array_equal(a.image, b.image) for a, b in zip(first.frames, expected.frames, strict=True)
        )
