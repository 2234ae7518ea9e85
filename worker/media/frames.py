"""Frame sampling: N uniformly spaced RGB frames of a video, or the one frame of an image.

The video's keyframe layout is read first by demuxing it (no decoding). With it, the cost model in
`worker.media.plan` picks the cheapest exact way to decode the wanted frames: decord's `get_batch`, PyAV
seeking to the keyframe before each group of wanted frames, or one sequential PyAV pass. All of them return
the same pixels for the same index (see `worker.media.decoders`). A file whose timestamps do not number its
frames unambiguously (missing or repeated pts, a demuxing error, fewer packets than the header declares) is
read in one sequential pass that numbers frames as they come out.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Literal

import av.container
import av.video.stream

from worker.errors import ErrorCode, MediaError
from worker.media.decoders import (
    FrameHook,
    open_for_decoding,
    read_counting,
    read_decord,
    read_from_start,
    read_keyframes,
    read_segments,
    require_video_stream,
)
from worker.media.images import check_pixels, load_image
from worker.media.layout import KeyframeLayout, read_layout
from worker.media.plan import (
    DecodeCosts,
    ReadMethod,
    Segment,
    choose_method,
    costs_for,
    nearest_keyframes,
    plan_segments,
)
from worker.media.types import Frame, FrameSample, MediaInfo
from worker.settings import MediaLimits, SamplingMethod

logger = logging.getLogger(__name__)

COSTS = DecodeCosts()  # the constants; the keyframe weight is set per file (`costs_of`)
# Demuxers that seek through an index of keyframes. decord seeks with av_seek_frame and trusts where it lands,
# which is wrong where FFmpeg searches by timestamps instead (MPEG-TS, MPEG-PS, ...): decord is kept to these.
INDEXED_FORMATS = frozenset({"mov", "mp4", "matroska", "webm", "avi"})
# decord returns a whole batch at once; a larger batch is read by PyAV, which hands on frame by frame
DECORD_MAX_BATCH_BYTES = 512 * 1024**2
PlanHook = Callable[[list[int], list[float]], None]  # the frame indices about to be decoded and their times
SAMPLE_NAMES = {
    "decord": "decord",
    "seek": "pyav-seek",
    "sequential": "pyav-sequential",
    "keyframes": "pyav-keyframes",
}


def pick_frame_indices(frame_count: int, wanted: int) -> list[int]:
    """Uniformly spaced indices: round((i + 0.5) * F / N), clipped to [0, F-1]; all frames when F <= N."""
    if frame_count <= 0 or wanted <= 0:
        return []
    if frame_count <= wanted:
        return list(range(frame_count))
    picked = {min(max(round((i + 0.5) * frame_count / wanted), 0), frame_count - 1) for i in range(wanted)}
    return sorted(picked)


@cache
def decord_installed() -> bool:
    return importlib.util.find_spec("decord") is not None


def costs_of(layout: KeyframeLayout) -> DecodeCosts:
    return costs_for(layout.key_bytes, layout.inter_bytes, COSTS)


def decord_reads_exactly(container: av.container.InputContainer, layout: KeyframeLayout) -> bool:
    indexed = not INDEXED_FORMATS.isdisjoint(container.format.name.split(","))
    return indexed and layout.decord_safe and decord_installed()


def decord_fits(info: MediaInfo, frames: int) -> bool:
    """Whether decord's batch of `frames` RGB frames stays within DECORD_MAX_BATCH_BYTES."""
    return frames * info.width * info.height * 3 <= DECORD_MAX_BATCH_BYTES


def announce(
    on_plan: PlanHook | None, layout: KeyframeLayout, info: MediaInfo, indices: Sequence[int]
) -> None:
    """Tell `on_plan` which frames are about to be decoded and when they are (estimated without a layout)."""
    if on_plan is None:
        return
    if layout.exact:
        times = [layout.timestamp(i) for i in indices]
    else:
        times = [i / info.fps if info.fps else float(i) for i in indices]
    on_plan(list(indices), times)


def replay_method(recorded: str | None) -> SamplingMethod:
    """The method that gives again the frames a recorded sample had: every exact method returns the same
    frames, so only a keyframe-aligned sample must be replayed as one."""
    return "keyframes" if recorded == "pyav-keyframes" else "auto"


def sample_frames(
    path: Path,
    info: MediaInfo,
    limits: MediaLimits,
    frames_per_video: int,
    *,
    method: SamplingMethod = "auto",
    on_plan: PlanHook | None = None,
    on_frame: FrameHook | None = None,
) -> FrameSample:
    """Decode what the detectors look at: `frames_per_video` uniformly spaced frames (see module doc).

    `method="keyframes"` takes the keyframe nearest each uniformly spaced frame instead and decodes only
    keyframes: a cheap first pass. The other methods force one decoder (for tests and benchmarks); one that
    cannot read the file exactly falls back to the cheapest that can. All exact methods return the same
    frames (tested); `replay_method` gives the method that reproduces a recorded sample.

    Streaming: `on_plan` is told the frame indices before decoding starts; `on_frame` sees every frame as
    soon as it is decoded (in decoding order, which is index order except after a failed seek) and the
    sample keeps what it returns, e.g. the frame without its pixels, so that frames need not pile up.
    """
    if frames_per_video < 1:
        raise ValueError(f"frames_per_video must be at least 1, not {frames_per_video}")
    if info.kind == "image":
        frame = load_image(path, info, limits)
        if on_plan is not None:
            on_plan([0], [0.0])
        kept = frame if on_frame is None else on_frame(frame)
        return FrameSample(info=info, frames=[kept], requested=1, decoded=1, method="image")
    check_pixels(info.width, info.height, limits, "video")
    with open_for_decoding(path) as container:
        stream = require_video_stream(container)
        layout = read_layout(container, stream, limits, path.name)
        total = layout.frame_count if layout.complete else info.frame_count or layout.frame_count
        indices = pick_frame_indices(total, frames_per_video)
        if method == "keyframes" and layout.exact:
            indices = nearest_keyframes(layout.keyframes, indices)
        announce(on_plan, layout, info, indices)
        sample = read_indices(path, container, stream, info, limits, layout, indices, method, on_frame)
    return checked(path, sample)


def read_frames(
    path: Path,
    info: MediaInfo,
    limits: MediaLimits,
    indices: Sequence[int],
    *,
    method: SamplingMethod = "auto",
    on_plan: PlanHook | None = None,
    on_frame: FrameHook | None = None,
) -> FrameSample:
    """Decode the given frame indices of a video (e.g. a second pass from `plan.pick_dense_indices`);
    indices outside the video are dropped. `method="keyframes"` decodes the keyframe nearest each.
    `on_plan` and `on_frame` as for `sample_frames`."""
    check_pixels(info.width, info.height, limits, "video")
    with open_for_decoding(path) as container:
        stream = require_video_stream(container)
        layout = read_layout(container, stream, limits, path.name)
        total = layout.frame_count if layout.complete else info.frame_count or layout.frame_count
        wanted = sorted({i for i in indices if 0 <= i < total})
        if method == "keyframes" and layout.exact:
            wanted = nearest_keyframes(layout.keyframes, wanted)
        announce(on_plan, layout, info, wanted)
        sample = read_indices(path, container, stream, info, limits, layout, wanted, method, on_frame)
    return checked(path, sample)


def checked(path: Path, sample: FrameSample) -> FrameSample:
    if not sample.frames:
        raise MediaError(ErrorCode.NO_FRAMES, f"no frame of the {sample.info.format} video could be decoded")
    if sample.decoded < sample.requested:
        logger.warning(
            "%s: decoded %s of %s planned frames (%s)",
            path.name,
            sample.decoded,
            sample.requested,
            sample.method,
        )
    return sample


def resolve_method(
    path: Path, layout: KeyframeLayout, indices: Sequence[int], method: SamplingMethod, decord_ok: bool
) -> ReadMethod:
    """The requested method if it reads this file exactly, else the cheapest exact one."""
    allowed: list[ReadMethod] = ["sequential", "seek"]
    if decord_ok:
        allowed.append("decord")
    for candidate in allowed:
        if candidate == method:
            return candidate
    if method == "decord":
        logger.info("%s: decord is absent or numbers this file's frames otherwise; using PyAV", path.name)
    return choose_method(layout.keyframes, layout.frame_count, indices, costs_of(layout), allowed)


def read_indices(
    path: Path,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    info: MediaInfo,
    limits: MediaLimits,
    layout: KeyframeLayout,
    indices: Sequence[int],
    method: SamplingMethod,
    hook: FrameHook | None = None,
) -> FrameSample:
    """Decode sorted, unique indices with the method chosen for this file (see module doc)."""
    found: dict[int, Frame] = {}
    name: ReadMethod | Literal["keyframes"] = "sequential"
    if not indices:
        pass
    elif not layout.exact:
        found = read_counting(path, indices, limits, hook)
    elif method == "keyframes":
        name = "keyframes"
        found = read_keyframe_indices(path, container, stream, layout, indices, limits, hook)
    else:
        decord_ok = decord_reads_exactly(container, layout) and decord_fits(info, len(indices))
        name = resolve_method(path, layout, indices, method, decord_ok)
        name, found = read_chosen(path, container, stream, layout, indices, limits, name, hook)
    frames = [found[i] for i in indices if i in found]
    return FrameSample(info, frames, requested=len(indices), decoded=len(frames), method=SAMPLE_NAMES[name])


def read_chosen(
    path: Path,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    layout: KeyframeLayout,
    indices: Sequence[int],
    limits: MediaLimits,
    name: ReadMethod,
    hook: FrameHook | None = None,
) -> tuple[ReadMethod, dict[int, Frame]]:
    """Run the chosen reader; what it could not decode is read in one sequential pass."""
    found: dict[int, Frame] | None = None
    if name == "decord":
        found = read_decord(path, layout, indices, hook)
        if found is None:
            pyav: tuple[ReadMethod, ...] = ("sequential", "seek")
            name = choose_method(layout.keyframes, layout.frame_count, indices, costs_of(layout), pyav)
    if name == "seek":
        segments = plan_segments(layout.keyframes, indices, costs_of(layout))
        found = read_segments(container, stream, layout, segments, limits, hook)
    if found is None:
        return name, read_from_start(path, container, stream, layout, indices, limits, hook)
    return name, complete_sequentially(path, container, stream, layout, indices, found, limits, hook)


def read_keyframe_indices(
    path: Path,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    layout: KeyframeLayout,
    indices: Sequence[int],
    limits: MediaLimits,
    hook: FrameHook | None = None,
) -> dict[int, Frame]:
    """Keyframes only, fed straight to the decoder; those it does not return are sought one by one."""
    found = {} if layout.open_gops else read_keyframes(path, container, stream, layout, indices, limits, hook)
    missing = [Segment(i, (i,)) for i in indices if i not in found]
    if missing:
        found.update(read_segments(container, stream, layout, missing, limits, hook))
    return complete_sequentially(path, container, stream, layout, indices, found, limits, hook)


def complete_sequentially(
    path: Path,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    layout: KeyframeLayout,
    indices: Sequence[int],
    found: dict[int, Frame],
    limits: MediaLimits,
    hook: FrameHook | None = None,
) -> dict[int, Frame]:
    """Add what a seeking reader missed (a seek that did not land, a frame not returned) in one pass."""
    missing = [i for i in indices if i not in found]
    if not missing:
        return found
    logger.info("%s: %s of %s frames decoded again sequentially", path.name, len(missing), len(indices))
    return {**found, **read_from_start(path, container, stream, layout, missing, limits, hook)}
