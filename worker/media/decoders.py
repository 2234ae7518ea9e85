"""Decoders for chosen frame indices: decord's `get_batch`, and PyAV by segments (a seek to a keyframe, then
decoding forward), by one sequential pass, or by decoding keyframes only.

Every PyAV reader maps a decoded frame's pts to its index through the keyframe layout and keeps a frame only
when decoding started at a keyframe at or before it, so all of them return the frame a sequential decode
returns for an index. Frames are converted with FFmpeg's default YUV->RGB conversion (PyAV `rgb24`), which is
also decord's, so the pixels are the same whichever reader ran.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import av.container
import av.packet
import av.video.frame
import av.video.stream
import numpy as np
from av.video.reformatter import VideoReformatter

from worker.errors import ErrorCode, MediaError
from worker.media.images import check_pixels
from worker.media.layout import KeyframeLayout
from worker.media.plan import Segment, decord_batch
from worker.media.probe import find_video_stream
from worker.media.types import Frame
from worker.settings import MediaLimits

logger = logging.getLogger(__name__)

FrameHook = Callable[[Frame], Frame]  # sees each frame as it is decoded; what it returns is kept
MAX_DECODE_ERRORS = 32  # bad packets skipped in one pass before it gives up on the rest
THREAD_TYPE = "AUTO"  # FFmpeg frame + slice threads
_converters = threading.local()


def open_for_decoding(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r", metadata_errors="replace")
    except (av.FFmpegError, OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise MediaError(ErrorCode.CORRUPT, f"video cannot be opened for decoding ({reason})") from None


def require_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    stream = find_video_stream(container)
    if stream is None:
        raise MediaError(ErrorCode.NO_FRAMES, "the file holds no video stream")
    stream.thread_type = THREAD_TYPE
    return stream


def rgb_converter() -> VideoReformatter:
    """This thread's YUV->RGB converter. `frame.to_ndarray(format="rgb24")` builds a new swscale context per
    frame, which costs more than decoding a small frame; a kept reformatter reuses it (same pixels)."""
    converter: VideoReformatter | None = getattr(_converters, "rgb", None)
    if converter is None:
        converter = _converters.rgb = VideoReformatter()
    return converter


def convert_frame(
    frame: av.video.frame.VideoFrame, index: int, seconds: float, limits: MediaLimits, hook: FrameHook | None
) -> Frame:
    """The RGB frame, handed to `hook` (if any) as soon as it exists; returns what the hook returns."""
    check_pixels(frame.width, frame.height, limits, "video frame")
    image = np.ascontiguousarray(rgb_converter().reformat(frame, format="rgb24").to_ndarray())
    converted = Frame(index=index, timestamp_s=seconds, image=image)
    return converted if hook is None else hook(converted)


# ---------------------------------------------------------------- packets and frames


def demux_from(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, name: str
) -> Iterator[av.packet.Packet]:
    """The stream's packets from the container's position; a broken container ends them."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as exc:
            logger.info("%s: demuxing stopped: %s", name, exc)
            return
        yield packet


def flush_decoder(stream: av.video.stream.VideoStream) -> list[av.video.frame.VideoFrame]:
    try:
        return stream.decode(None)
    except av.FFmpegError:
        return []


def decode_packets(
    stream: av.video.stream.VideoStream, packets: Iterable[av.packet.Packet], name: str
) -> Iterator[av.video.frame.VideoFrame]:
    """Frames in presentation order; bad packets are skipped, too many of them end the pass."""
    errors = 0
    for packet in packets:
        try:
            frames = stream.decode(packet)
        except av.FFmpegError as exc:
            errors += 1
            logger.debug("%s: bad packet skipped: %s", name, exc)
            if errors > MAX_DECODE_ERRORS:
                return
            continue
        yield from frames
    yield from flush_decoder(stream)


def seek_keyframe(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    layout: KeyframeLayout,
    keyframe: int,
) -> tuple[Iterator[av.packet.Packet], int] | None:
    """Seek to the keyframe at frame index `keyframe`: the packets from there and the index decoding
    starts at. None unless the demuxer landed on a keyframe at or before the one asked for."""
    try:
        container.seek(int(layout.pts[keyframe]), stream=stream, backward=True, any_frame=False)
    except av.FFmpegError as exc:
        logger.info("%s: seek to frame %s failed: %s", container.name, keyframe, exc)
        return None
    packets = demux_from(container, stream, container.name)
    first = next(packets, None)
    landed = layout.index_of(first.pts) if first is not None and first.is_keyframe else None
    if first is None or landed is None or landed > keyframe:
        logger.info("%s: seek to frame %s did not land on a keyframe before it", container.name, keyframe)
        return None
    return itertools.chain([first], packets), landed


def prime_decoder(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, layout: KeyframeLayout
) -> bool:
    """Decode the stream's first keyframe, as a sequential pass does, before seeking past it.

    FFmpeg's decoders read encoder facts from the first keyframe and keep them across seeks (H.264 takes the
    x264 version from its SEI and works around that version's bugs; MPEG-4 part 2 takes the Xvid/DivX
    build): frames decoded without them differ from a sequential decode, e.g. on old x264 4:4:4 streams.
    """
    landing = seek_keyframe(container, stream, layout, layout.keyframes[0])
    if landing is None:
        return False
    packets, _ = landing
    try:
        stream.decode(next(packets))
    except av.FFmpegError as exc:
        logger.debug("%s: first keyframe does not decode: %s", container.name, exc)
    return True


# ---------------------------------------------------------------- PyAV readers


def collect_frames(
    stream: av.video.stream.VideoStream,
    packets: Iterable[av.packet.Packet],
    layout: KeyframeLayout,
    segment: Segment,
    floor: int,
    limits: MediaLimits,
    hook: FrameHook | None = None,
) -> dict[int, Frame]:
    """Decode until the segment's last frame, keeping its wanted frames; frames before `floor` (leading
    frames of an open group of pictures, which refer to frames before the seek) are not kept."""
    wanted = {
        int(layout.pts[index]): index for index in segment.wanted
    }  # matched by pts: no lookup per frame
    floor_pts, last_pts = int(layout.pts[floor]), int(layout.pts[segment.last])
    found: dict[int, Frame] = {}
    for frame in decode_packets(stream, packets, stream.container.name):
        pts = frame.pts
        if pts is None or pts < floor_pts:
            continue
        index = wanted.get(pts)
        if index is not None:
            found[index] = convert_frame(frame, index, layout.timestamp(index), limits, hook)
        if pts >= last_pts:
            break
    return found


def read_segment(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    layout: KeyframeLayout,
    segment: Segment,
    limits: MediaLimits,
    hook: FrameHook | None = None,
) -> dict[int, Frame] | None:
    """The wanted frames of one segment; None when the seek could not land on a keyframe before it."""
    landing = seek_keyframe(container, stream, layout, segment.keyframe)
    if landing is None:
        return None
    packets, floor = landing
    return collect_frames(stream, packets, layout, segment, floor, limits, hook)


def read_segments(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    layout: KeyframeLayout,
    segments: Sequence[Segment],
    limits: MediaLimits,
    hook: FrameHook | None = None,
) -> dict[int, Frame]:
    """Seek per segment, decoding forward; stops at the first seek that fails (the caller reads the rest)."""
    found: dict[int, Frame] = {}
    skips_first = bool(segments) and segments[0].keyframe != layout.keyframes[0]
    if skips_first and not prime_decoder(container, stream, layout):
        return found
    for segment in segments:
        frames = read_segment(container, stream, layout, segment, limits, hook)
        if frames is None:
            break
        found.update(frames)
    return found


@contextmanager
def packets_from_start(
    path: Path,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    layout: KeyframeLayout,
) -> Iterator[tuple[av.video.stream.VideoStream, Iterator[av.packet.Packet], int]]:
    """The stream, its packets from the first keyframe on, and the first index decoded exactly.

    The container is rewound when the demuxer can seek there exactly; otherwise the file is opened again.
    """
    landing = seek_keyframe(container, stream, layout, layout.keyframes[0])
    if landing is not None:
        yield stream, landing[0], landing[1]
        return
    with open_for_decoding(path) as fresh:
        fresh_stream = require_video_stream(fresh)
        yield fresh_stream, demux_from(fresh, fresh_stream, fresh.name), 0


def read_from_start(
    path: Path,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    layout: KeyframeLayout,
    indices: Sequence[int],
    limits: MediaLimits,
    hook: FrameHook | None = None,
) -> dict[int, Frame]:
    """One sequential pass from the first keyframe to the last wanted frame."""
    with packets_from_start(path, container, stream, layout) as (decoder, packets, floor):
        segment = Segment(layout.keyframes[0], tuple(indices))
        return collect_frames(decoder, packets, layout, segment, floor, limits, hook)


def read_keyframes(
    path: Path,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    layout: KeyframeLayout,
    indices: Sequence[int],
    limits: MediaLimits,
    hook: FrameHook | None = None,
) -> dict[int, Frame]:
    """Frames at keyframe indices, decoding the first keyframe and those asked for, nothing else.

    Only for closed groups of pictures: an open group's keyframe (an H.264 recovery point rather than an
    IDR frame) is not always output by a decoder fed keyframes only; the caller seeks to those instead.
    """
    wanted = set(indices)
    found: dict[int, Frame] = {}
    with packets_from_start(path, container, stream, layout) as (decoder, packets, _):
        keys = (
            p for p in packets if p.size == 0 or (p.is_keyframe and keyframe_to_feed(layout, p.pts, wanted))
        )
        for frame in decode_packets(decoder, stop_after(keys, layout, indices[-1]), container.name):
            index = layout.index_of(frame.pts)
            if index in wanted:
                found[index] = convert_frame(frame, index, layout.timestamp(index), limits, hook)
    return found


def keyframe_to_feed(layout: KeyframeLayout, pts: int | None, wanted: set[int]) -> bool:
    index = layout.index_of(pts)
    return index is not None and (index in wanted or index == layout.keyframes[0])


def stop_after(
    packets: Iterable[av.packet.Packet], layout: KeyframeLayout, last: int
) -> Iterator[av.packet.Packet]:
    """Packets up to and including the one of frame `last`."""
    for packet in packets:
        yield packet
        if packet.size and layout.index_of(packet.pts) == last:
            return


# ---------------------------------------------------------------- without a layout


def frame_seconds(frame: av.video.frame.VideoFrame, stream: av.video.stream.VideoStream) -> float:
    if frame.pts is None or stream.time_base is None:
        return 0.0
    return float((frame.pts - (stream.start_time or 0)) * stream.time_base)


def read_counting(
    path: Path, indices: Sequence[int], limits: MediaLimits, hook: FrameHook | None = None
) -> dict[int, Frame]:
    """One sequential pass from the file's first packet, numbering frames as they come out (no layout)."""
    wanted = set(indices)
    found: dict[int, Frame] = {}
    with open_for_decoding(path) as container:
        stream = require_video_stream(container)
        frames = decode_packets(stream, demux_from(container, stream, container.name), container.name)
        for index, frame in enumerate(frames):
            if index in wanted:
                found[index] = convert_frame(frame, index, frame_seconds(frame, stream), limits, hook)
            if index >= indices[-1]:
                break
    return found


# ---------------------------------------------------------------- decord


def as_numpy(batch: Any) -> np.ndarray:
    """decord returns its own NDArray (native bridge) or a framework tensor if a bridge was set."""
    if hasattr(batch, "asnumpy"):
        return np.asarray(batch.asnumpy())
    return np.asarray(batch)


def read_decord(
    path: Path, layout: KeyframeLayout, indices: Sequence[int], hook: FrameHook | None = None
) -> dict[int, Frame] | None:
    """Frames by decord's `get_batch`; None if decord is absent, cannot read the file or counts otherwise.

    decord returns the whole batch at once: `hook` sees the frames only when all are decoded."""
    try:
        import decord
    except ImportError:
        return None
    batch_indices = decord_batch(layout.keyframes, indices)
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        if len(reader) != layout.frame_count:
            logger.info(
                "%s: decord counts %s frames, the stream %s", path.name, len(reader), layout.frame_count
            )
            return None
        batch = as_numpy(reader.get_batch(batch_indices))
    except Exception as exc:  # decord raises DECORDError / RuntimeError for anything it cannot read
        logger.warning("decord cannot read %s (%s); reading with PyAV", path.name, str(exc)[:200])
        return None
    if (
        batch.ndim != 4
        or batch.shape[0] != len(batch_indices)
        or batch.shape[3] != 3
        or batch.dtype != np.uint8
    ):
        logger.warning("decord returned an unexpected batch %s for %s; using PyAV", batch.shape, path.name)
        return None
    skip = len(batch_indices) - len(indices)
    found: dict[int, Frame] = {}
    for k, index in enumerate(indices):
        frame = Frame(index, layout.timestamp(index), np.ascontiguousarray(batch[skip + k]))
        found[index] = frame if hook is None else hook(frame)
    return found
