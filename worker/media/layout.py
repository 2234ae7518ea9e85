"""Keyframe layout of a video stream, read by demuxing its packets without decoding any of them.

Frame index i is the frame with the i-th smallest presentation timestamp among the stream's packets, the
definition decord uses too; every decode method maps a decoded frame's pts to its index through this table,
so seeking readers, the sequential reader and decord agree on which frame is index i. Demuxing reads the
file once (a few milliseconds for a minute of 720p), far cheaper than decoding it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import av.container
import av.video.stream
import numpy as np

from worker.errors import ErrorCode, MediaError
from worker.media.probe import find_video_stream
from worker.settings import MediaLimits

logger = logging.getLogger(__name__)


class PacketFacts(NamedTuple):
    """What the layout needs from one demuxed packet."""

    pts: int | None
    keyframe: bool
    size: int
    discard: bool = False


@dataclass(frozen=True, eq=False)
class KeyframeLayout:
    """Where the keyframes of a video stream are, in frame indices, and how pts maps to an index."""

    pts: np.ndarray  # int64, sorted: frame i is presented at pts[i] (time_base units)
    keyframes: tuple[int, ...]  # frame indices of keyframes, sorted
    time_base: Fraction
    start_pts: int  # the stream's start time; timestamps are measured from it
    complete: bool  # demuxing reached the end and found every frame the container declares
    exact: bool  # complete, and every frame has its own pts: pts -> index is unambiguous
    open_gops: bool  # some frames decoded after a keyframe are shown before it (leading frames)
    decord_safe: bool  # exact, closed groups of pictures, no empty or discarded packets (decord counts them)
    key_bytes: float = 0.0  # mean packet size of keyframes
    inter_bytes: float = 0.0  # mean packet size of the other frames (0 when every frame is a keyframe)

    @property
    def frame_count(self) -> int:
        return int(self.pts.size)

    def index_of(self, pts: int | None) -> int | None:
        """The frame index of a decoded frame's pts; None when the pts is not one of the stream's frames."""
        if pts is None or not self.pts.size:
            return None
        position = int(np.searchsorted(self.pts, pts))
        if position < self.pts.size and int(self.pts[position]) == pts:
            return position
        return None

    def timestamp(self, index: int) -> float:
        """Seconds from the stream's start to frame `index`."""
        return float((int(self.pts[index]) - self.start_pts) * self.time_base)


def has_unique_values(values: np.ndarray) -> bool:
    return bool(values.size < 2 or np.all(np.diff(values) > 0))


def build_layout(
    packets: Sequence[PacketFacts],
    time_base: Fraction,
    start_pts: int | None,
    complete: bool,
) -> KeyframeLayout:
    """The layout from demuxed packets in decode order; empty packets carry no frame and are skipped."""
    kept = [p for p in packets if p.size > 0 and not p.discard]
    skipped = len(packets) - len(kept)
    missing_pts = any(p.pts is None for p in kept)
    stamps = np.array([p.pts if p.pts is not None else 0 for p in kept], dtype=np.int64)
    order = np.argsort(stamps, kind="stable")
    ordered = stamps[order]
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    decode_positions = [n for n, p in enumerate(kept) if p.keyframe]
    keyframes = tuple(sorted(int(rank[n]) for n in decode_positions))
    exact = complete and not missing_pts and bool(keyframes) and has_unique_values(ordered)
    open_gops = keyframes != tuple(decode_positions)
    key_sizes = [p.size for p in kept if p.keyframe]
    inter_sizes = [p.size for p in kept if not p.keyframe]
    first = int(ordered[0]) if ordered.size else 0
    return KeyframeLayout(
        pts=ordered,
        keyframes=keyframes,
        time_base=time_base,
        start_pts=first if start_pts is None else start_pts,
        complete=complete,
        exact=exact,
        open_gops=open_gops,
        decord_safe=exact and skipped == 0 and not open_gops,
        key_bytes=float(np.mean(key_sizes)) if key_sizes else 0.0,
        inter_bytes=float(np.mean(inter_sizes)) if inter_sizes else 0.0,
    )


def read_packets(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    limits: MediaLimits,
    name: str,
) -> tuple[list[PacketFacts], bool]:
    """Every packet of the stream, in decode order, and whether demuxing reached the end cleanly."""
    facts: list[PacketFacts] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0 and packet.pts is None and packet.dts is None:
                continue  # the end-of-stream marker
            facts.append(PacketFacts(packet.pts, packet.is_keyframe, packet.size, packet.is_discard))
            if len(facts) > limits.max_frames:
                raise MediaError(ErrorCode.TOO_LONG, f"video has over {limits.max_frames} frames")
    except av.FFmpegError as exc:
        logger.info("%s: demuxing stopped after %s packets: %s", name, len(facts), exc)
        return facts, False
    return facts, True


def read_layout(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    limits: MediaLimits,
    name: str,
) -> KeyframeLayout:
    """Demux the stream to its end (no decoding); the container is left at the end of the file."""
    facts, clean = read_packets(container, stream, limits, name)
    kept = sum(1 for p in facts if p.size > 0 and not p.discard)
    declared = stream.frames
    complete = clean and kept > 0 and (declared <= 0 or declared == len(facts))
    time_base = Fraction(stream.time_base) if stream.time_base is not None else Fraction(1, 1)
    return build_layout(facts, time_base, stream.start_time, complete and stream.time_base is not None)


def probe_layout(path: Path, limits: MediaLimits) -> KeyframeLayout | None:
    """The layout of a file's first video stream; None when it cannot be opened or holds none."""
    try:
        container = av.open(str(path), mode="r", metadata_errors="replace")
    except (av.FFmpegError, OSError, ValueError) as exc:
        logger.info("%s: no keyframe layout (%s)", path.name, type(exc).__name__)
        return None
    with container:
        stream = find_video_stream(container)
        return None if stream is None else read_layout(container, stream, limits, path.name)
