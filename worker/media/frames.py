"""Frame sampling: N uniformly spaced RGB frames of a video, or the one frame of an image.

Videos are read with decord when it is installed and can open the file (`get_batch` seeks to the wanted
frames); otherwise with PyAV in one sequential pass that converts only the wanted frames and stops after
the last one. Both return the same pixels for the same index (FFmpeg's default YUV->RGB conversion).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import av
import av.container
import av.video.frame
import av.video.stream
import numpy as np

from worker.errors import ErrorCode, MediaError
from worker.media.images import check_pixels, load_image
from worker.media.probe import find_video_stream
from worker.media.types import Frame, FrameSample, MediaInfo
from worker.settings import MediaLimits

logger = logging.getLogger(__name__)

MAX_DECODE_ERRORS = 32  # bad packets skipped by the PyAV pass before it gives up on the rest


def pick_frame_indices(frame_count: int, wanted: int) -> list[int]:
    """Uniformly spaced indices: round((i + 0.5) * F / N), clipped to [0, F-1]; all frames when F <= N."""
    if frame_count <= 0 or wanted <= 0:
        return []
    if frame_count <= wanted:
        return list(range(frame_count))
    picked = {min(max(round((i + 0.5) * frame_count / wanted), 0), frame_count - 1) for i in range(wanted)}
    return sorted(picked)


def sample_frames(
    path: Path,
    info: MediaInfo,
    limits: MediaLimits,
    frames_per_video: int,
    *,
    prefer: Literal["decord", "pyav"] = "decord",
) -> FrameSample:
    """Decode what the detectors look at.

    `prefer="pyav"` skips decord (for tests, and for decord builds known to misread a format).
    """
    if frames_per_video < 1:
        raise ValueError(f"frames_per_video must be at least 1, not {frames_per_video}")
    if info.kind == "image":
        frame = load_image(path, info, limits)
        return FrameSample(info=info, frames=[frame], requested=1, decoded=1, method="image")
    check_pixels(info.width, info.height, limits, "video")
    sample = read_with_decord(path, info, frames_per_video) if prefer == "decord" else None
    if sample is None:
        sample = read_with_pyav(path, info, limits, frames_per_video)
    if not sample.frames:
        raise MediaError(ErrorCode.NO_FRAMES, f"no frame of the {info.format} video could be decoded")
    if sample.decoded < sample.requested:
        logger.warning(
            "%s: decoded %s of %s planned frames (%s)",
            path.name,
            sample.decoded,
            sample.requested,
            sample.method,
        )
    return sample


def as_numpy(batch: Any) -> np.ndarray:
    """decord returns its own NDArray (native bridge) or a framework tensor if a bridge was set."""
    if hasattr(batch, "asnumpy"):
        return np.asarray(batch.asnumpy())
    return np.asarray(batch)


def read_with_decord(path: Path, info: MediaInfo, wanted: int) -> FrameSample | None:
    """Frames by decord's seeking reader; None when decord is absent or cannot read the file."""
    try:
        import decord
    except ImportError:
        logger.debug("decord is not installed; reading %s with PyAV", path.name)
        return None
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        indices = pick_frame_indices(len(reader), wanted)
        if not indices:
            return None
        batch = as_numpy(reader.get_batch(indices))
        stamps = np.asarray(reader.get_frame_timestamp(indices), dtype=np.float64).reshape(len(indices), -1)
    except Exception as exc:  # decord raises DECORDError / RuntimeError for anything it cannot read
        logger.warning("decord cannot read %s (%s); falling back to PyAV", path.name, str(exc)[:200])
        return None
    if batch.ndim != 4 or batch.shape[0] != len(indices) or batch.shape[3] != 3 or batch.dtype != np.uint8:
        logger.warning("decord returned an unexpected batch %s for %s; using PyAV", batch.shape, path.name)
        return None
    frames = [
        Frame(index=index, timestamp_s=float(stamps[k, 0]), image=np.ascontiguousarray(batch[k]))
        for k, index in enumerate(indices)
    ]
    return FrameSample(info=info, frames=frames, requested=len(indices), decoded=len(frames), method="decord")


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
    return stream


def count_video_packets(path: Path, limits: MediaLimits) -> int:
    """Frame count for a video that declares none: demux (no decode) and count video packets."""
    count = 0
    with open_for_decoding(path) as container:
        stream = require_video_stream(container)
        try:
            for packet in container.demux(stream):
                count += 1 if packet.size else 0
                if count > limits.max_frames:
                    raise MediaError(ErrorCode.TOO_LONG, f"video has over {limits.max_frames} frames")
        except av.FFmpegError as exc:
            logger.info("%s: demuxing stopped after %s packets: %s", path.name, count, exc)
    return count


def flush_decoder(stream: av.video.stream.VideoStream) -> list[av.video.frame.VideoFrame]:
    try:
        return stream.decode(None)
    except av.FFmpegError:
        return []


def iterate_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, name: str
) -> Iterator[tuple[int, av.video.frame.VideoFrame]]:
    """(index, frame) in presentation order; bad packets are skipped, a broken container ends the pass."""
    packets = container.demux(stream)
    index = errors = 0
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return  # demux ends with an empty packet, which already flushed the decoder
        except av.FFmpegError as exc:
            logger.info("%s: demuxing stopped at frame %s: %s", name, index, exc)
            break
        try:
            decoded = stream.decode(packet)
        except av.FFmpegError as exc:
            errors += 1
            logger.debug("%s: bad packet skipped near frame %s: %s", name, index, exc)
            if errors > MAX_DECODE_ERRORS:
                break
            continue
        for frame in decoded:
            yield index, frame
            index += 1
    for frame in flush_decoder(stream):
        yield index, frame
        index += 1


def frame_time(frame: av.video.frame.VideoFrame, index: int, fps: float | None) -> float:
    seconds: float | None = frame.time
    if seconds is not None:
        return float(seconds)
    return index / fps if fps else 0.0


def decode_wanted(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    indices: Sequence[int],
    info: MediaInfo,
    limits: MediaLimits,
) -> list[Frame]:
    wanted = set(indices)
    last = max(indices)
    frames: list[Frame] = []
    for index, frame in iterate_frames(container, stream, container.name):
        if index in wanted:
            check_pixels(frame.width, frame.height, limits, "video frame")
            image = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
            frames.append(Frame(index=index, timestamp_s=frame_time(frame, index, info.fps), image=image))
        if index >= last:
            break
    return frames


def read_with_pyav(path: Path, info: MediaInfo, limits: MediaLimits, wanted: int) -> FrameSample:
    """One sequential decode pass that keeps only the wanted frames."""
    total = info.frame_count or count_video_packets(path, limits)
    indices = pick_frame_indices(total, wanted)
    frames: list[Frame] = []
    if indices:
        with open_for_decoding(path) as container:
            stream = require_video_stream(container)
            stream.thread_type = "AUTO"
            frames = decode_wanted(container, stream, indices, info, limits)
    return FrameSample(info=info, frames=frames, requested=len(indices), decoded=len(frames), method="pyav")
