"""Frame sampler vs the raw decode methods, for the same frames (issue 6, part 5a). Not a test.

For clips made here with PyAV (720p H.264 with a keyframe every 30 and every 250 frames, 1080p with x264's
default interval) and the real videos of the dev set, times `sample_frames` (method auto: keyframe layout,
cost model, chosen reader) against three raw methods asked for the same uniformly spaced frames: decord
`get_batch`, PyAV seek per group of pictures, PyAV sequential pass. Each time is the best of --repeats runs,
interleaved. Prints the ratio of the sampler to the best raw method (goal: <= 1.1) and whether each raw method
returned the pixels a sequential decode does, then the measured cost-model constants (--calibrate), and
writes everything as JSON.

    python bench/sampler.py [--seconds 60] [--hd-seconds 20] [--frames 32] [--repeats 5] [--out FILE.json]

Generated clips are cached in --work (default: a folder in the system temp dir) by their parameters.
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import av
import av.video.stream
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.media import MediaInfo, probe_media, sample_frames
from worker.media.decoders import THREAD_TYPE, rgb_converter
from worker.media.frames import pick_frame_indices
from worker.media.layout import KeyframeLayout, probe_layout, read_layout
from worker.media.plan import DecodeCosts, keyframe_weight
from worker.settings import MediaLimits

LIMITS = MediaLimits()
Frames = dict[int, np.ndarray]


# ---------------------------------------------------------------- clips


def texture(height: int, width: int) -> np.ndarray:
    """Random 16-pixel blocks: detailed enough that intra frames cost what they cost in real video."""
    blocks = np.random.default_rng(0).integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((16, 16, 1), np.uint8))[:height, :width]


def make_clip(path: Path, width: int, height: int, seconds: float, gop: int | None, preset: str) -> Path:
    """H.264, 30 fps, B-frames, the scene panning 3 px right and 2 px down a frame; cached by name."""
    if path.is_file():
        return path
    scene = texture(height * 2, width * 2)
    options: dict[str, object] = {"preset": preset, "crf": "23"}
    if gop is not None:
        options.update(g=str(gop), keyint_min=str(gop), sc_threshold="0")
    partial = path.with_suffix(".part.mp4")
    with av.open(str(partial), mode="w") as container:
        stream = container.add_stream("libx264", rate=30)
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width, stream.height, stream.pix_fmt, stream.options = width, height, "yuv420p", options
        for index in range(round(seconds * 30)):
            x, y = (3 * index) % width, (2 * index) % height
            image = av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[y : y + height, x : x + width]))
            container.mux(stream.encode(image))
        container.mux(stream.encode(None))
    partial.rename(path)
    return path


def make_clips(work: Path, seconds: float, hd_seconds: float, preset: str) -> list[Path]:
    work.mkdir(parents=True, exist_ok=True)
    specs = [
        (f"720p-gop30-{seconds:g}s.mp4", 1280, 720, seconds, 30),
        (f"720p-gop250-{seconds:g}s.mp4", 1280, 720, seconds, 250),
        (f"1080p-{hd_seconds:g}s.mp4", 1920, 1080, hd_seconds, None),
    ]
    clips = []
    for name, width, height, length, gop in specs:
        start = time.perf_counter()
        fresh = not (work / name).is_file()
        clips.append(make_clip(work / name, width, height, length, gop, preset))
        if fresh:
            print(f"made {name} in {time.perf_counter() - start:.1f} s")
    return clips


# ---------------------------------------------------------------- raw methods


def rgb(frame: av.VideoFrame) -> np.ndarray:
    """The project's YUV->RGB conversion (one swscale context per thread): raw PyAV gets it too."""
    return rgb_converter().reformat(frame, format="rgb24").to_ndarray()


def demux_time(path: Path) -> float:
    """What the sampler adds to a decode: demuxing the open file once to read its keyframe layout."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = time.perf_counter()
        read_layout(container, stream, LIMITS, path.name)
        return time.perf_counter() - start


def raw_decord(path: Path, indices: list[int], layout: KeyframeLayout) -> Frames:
    import decord

    batch = decord.VideoReader(str(path), ctx=decord.cpu(0)).get_batch(indices).asnumpy()
    return {index: batch[k] for k, index in enumerate(indices)}


def raw_sequential(path: Path, indices: list[int], layout: KeyframeLayout) -> Frames:
    wanted, found = set(indices), {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = THREAD_TYPE
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                found[index] = rgb(frame)
            if index >= indices[-1]:
                break
    return found


def raw_seek(path: Path, indices: list[int], layout: KeyframeLayout) -> Frames:
    """One seek per group of pictures holding wanted frames, decoding forward; keyframes known beforehand."""
    groups: dict[int, list[int]] = {}
    for index in indices:
        key = layout.keyframes[bisect.bisect_right(layout.keyframes, index) - 1]
        groups.setdefault(key, []).append(index)
    found: Frames = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = THREAD_TYPE
        for key, wanted in groups.items():
            container.seek(int(layout.pts[key]), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                found_at = layout.index_of(frame.pts)
                if found_at in wanted:
                    found[found_at] = rgb(frame)
                if found_at is not None and found_at >= wanted[-1]:
                    break
    return found


def sampler(path: Path, info: MediaInfo, frames: int) -> Frames:
    sample = sample_frames(path, info, LIMITS, frames)  # the pipeline probes before it samples, untimed
    return {frame.index: frame.image for frame in sample.frames}


def same_pixels(ours: Frames, reference: Frames) -> bool:
    return ours.keys() == reference.keys() and all(np.array_equal(ours[i], reference[i]) for i in reference)


def best_times(
    actions: dict[str, Callable[[], Frames]], repeats: int
) -> tuple[dict[str, float], dict[str, Frames]]:
    times = {name: float("inf") for name in actions}
    results: dict[str, Frames] = {}
    for _ in range(repeats):
        for name, action in actions.items():
            start = time.perf_counter()
            results[name] = action()
            times[name] = min(times[name], time.perf_counter() - start)
    return times, results


def bench_clip(path: Path, frames: int, repeats: int) -> dict[str, Any]:
    layout = probe_layout(path, LIMITS)
    assert layout is not None and layout.exact, path
    indices = pick_frame_indices(layout.frame_count, frames)
    info = probe_media(path, LIMITS)
    method = sample_frames(path, info, LIMITS, frames).method
    raw: dict[str, Callable[[Path, list[int], KeyframeLayout], Frames]] = {
        "decord": raw_decord,
        "pyav-seek": raw_seek,
        "pyav-sequential": raw_sequential,
    }
    actions: dict[str, Callable[[], Frames]] = {"sampler": lambda: sampler(path, info, frames)}
    for name, read in raw.items():
        actions[name] = partial(read, path, indices, layout)
    times, results = best_times(actions, repeats)
    best = min(raw, key=lambda name: times[name])
    demux = min(demux_time(path) for _ in range(repeats))
    return {
        "clip": path.name,
        "size": f"{info.width}x{info.height}",
        "frames": layout.frame_count,
        "keyframes": len(layout.keyframes),
        "method": method,
        "seconds": times,
        "layout_demux_s": demux,
        "best_raw": best,
        "ratio": times["sampler"] / times[best],
        "exact": {name: same_pixels(results[name], results["pyav-sequential"]) for name in actions},
    }


# ---------------------------------------------------------------- calibration of plan.DecodeCosts


def decode_time(path: Path, keys_only: bool = False, last: int | None = None) -> float:
    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = THREAD_TYPE
        if keys_only:
            stream.codec_context.skip_frame = "NONKEY"
        for index, _ in enumerate(container.decode(stream)):
            if last is not None and index >= last:
                break
    return time.perf_counter() - start


def timed(action: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def calibrate_clip(path: Path, repeats: int) -> dict[str, Any]:
    """The plan.DecodeCosts constants measured on one clip, in units of one inter frame decoded by PyAV."""
    import decord

    layout = probe_layout(path, LIMITS)
    assert layout is not None and len(layout.keyframes) > 1, path
    frames, keys = layout.frame_count, len(layout.keyframes)
    everything = timed(lambda: decode_time(path), repeats)
    only_keys = timed(lambda: decode_time(path, keys_only=True), repeats)
    inter = (everything - only_keys) / (frames - keys)
    # the last frame of every group of pictures: a seek per group decodes exactly what one pass decodes
    ends = [key - 1 for key in layout.keyframes[1:]] + [frames - 1]
    one_pass = timed(lambda: raw_sequential(path, ends, layout), repeats)
    per_group = timed(lambda: raw_seek(path, ends, layout), repeats)
    opening = timed(lambda: decord.VideoReader(str(path)), repeats)
    decord_pass = (
        timed(lambda: raw_decord(path, ends, layout), repeats) - opening
    )  # no seek: see decord_reads
    return {
        "clip": path.name,
        "keyframe": only_keys / keys / inter,
        "keyframe_weight": keyframe_weight(layout.key_bytes, layout.inter_bytes),
        "seek_overhead": (per_group - one_pass) / (keys - 1) / inter,
        "seek_overhead_keyframes": (per_group - one_pass) / (keys - 1) / (only_keys / keys),
        "decord_frame": decord_pass / one_pass,
        "decord_demux": opening / frames / inter,
    }


def count_keyframes(path: Path) -> int:
    layout = probe_layout(path, LIMITS)
    return 0 if layout is None else len(layout.keyframes)


def calibrate(clips: list[Path], repeats: int) -> list[dict[str, Any]]:
    rows = [calibrate_clip(path, repeats) for path in clips]
    print(
        f"\n{'calibration (inter-frame units)':34} {'key':>6} {'est.':>6} {'seek':>6} {'seek/key':>8} "
        f"{'decord':>7} {'demux':>6}"
    )
    for row in rows:
        print(
            f"{row['clip'][:34]:34} {row['keyframe']:6.1f} {row['keyframe_weight']:6.1f} "
            f"{row['seek_overhead']:6.1f} {row['seek_overhead_keyframes']:8.2f} {row['decord_frame']:7.2f} "
            f"{row['decord_demux']:6.3f}"
        )
    costs = DecodeCosts()
    print(
        f"plan.DecodeCosts: keyframe = keyframe_weight(sizes), seek = keyframe + {costs.seek}, "
        f"decord_frame {costs.decord_frame}, decord_demux {costs.decord_demux}"
    )
    return rows


# ---------------------------------------------------------------- report


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'clip':34} {'size':>9} {'frames':>6} {'keys':>4} {'chosen':>15} {'sampler':>8} "
    head += f"{'decord':>8} {'seek':>8} {'seq':>8} {'ratio':>6} {'demux ms':>8}  raw exact (decord/seek)"
    print(head)
    for row in rows:
        t = row["seconds"]
        line = f"{row['clip'][:34]:34} {row['size']:>9} {row['frames']:>6} {row['keyframes']:>4} "
        line += f"{row['method']:>15} "
        line += f"{t['sampler']:8.3f} {t['decord']:8.3f} {t['pyav-seek']:8.3f} {t['pyav-sequential']:8.3f} "
        line += f"{row['ratio']:6.2f} {row['layout_demux_s'] * 1000:8.1f}  "
        line += f"{row['exact']['decord']}/{row['exact']['pyav-seek']}"
        print(line + ("" if row["exact"]["sampler"] else "  SAMPLER PIXELS DIFFER"))
    ratios = [row["ratio"] for row in rows]
    median = float(np.median(ratios))
    print(f"sampler / best raw method: max {max(ratios):.2f}, median {median:.2f} (goal <= 1.1)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the 720p clips")
    parser.add_argument("--hd-seconds", type=float, default=20.0, help="length of the 1080p clip")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="best of; the machine may be shared")
    parser.add_argument("--preset", default="veryfast", help="x264 preset for the generated clips")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dfw-bench-sampler")
    parser.add_argument("--dev", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/dev")
    parser.add_argument("--no-calibrate", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench-sampler.json"))
    args = parser.parse_args()
    clips = make_clips(args.work, args.seconds, args.hd_seconds, args.preset)
    dev = sorted(p for p in args.dev.glob("*/*/*") if p.suffix in {".mp4", ".webm", ".avi"})
    print(
        f"{args.frames} uniform frames; 720p clips {args.seconds:g} s, 1080p {args.hd_seconds:g} s; "
        f"{len(dev)} dev videos; best of {args.repeats}; PyAV thread_type {THREAD_TYPE}"
    )
    rows = [bench_clip(path, args.frames, args.repeats) for path in [*clips, *dev]]
    print_table(rows)
    report: dict[str, Any] = {"config": {k: str(v) for k, v in vars(args).items()}, "clips": rows}
    if not args.no_calibrate:
        report["calibration"] = calibrate(
            [p for p in [*clips, *dev] if count_keyframes(p) >= 3], args.repeats
        )
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
