"""Which frames to decode and how: the decode cost model, the method choice and index planning. Pure.

Costs are in units of one inter (P/B) frame decoded by PyAV. A method's cost is the frames it decodes, with
keyframes weighted by `DecodeCosts.keyframe` (estimated per file from its packet sizes by `keyframe_weight`),
plus a penalty per seek:

- sequential: every frame from the first to the last wanted one;
- seek: per segment, the frames from its keyframe to its last wanted frame; a seek before every segment but
  the first. Segments start as one per group of pictures holding wanted frames; neighbours merge when
  decoding the frames between them costs less than a seek. If the first segment is not at the first
  keyframe, the first keyframe is decoded and a seek made before it (see `decoders.prime_decoder`);
- decord: what decord 0.6's `get_batch` decodes (it seeks whenever the next wanted frame lies in another
  group of pictures and decodes forward inside one), times its relative frame cost, plus its seeks and its
  own demuxing pass to index the file;
- keyframes: only keyframes (not costed: asked for explicitly).

A seek costs about one keyframe more than it looks: FFmpeg's frame threads overlap a keyframe with the
frames around it in a sequential pass, but after a seek the keyframe is decoded alone while the next frames
wait for it. Measured by `python bench/sampler.py` (2 shared cores, PyAV 18 / FFmpeg 8.1, thread_type AUTO,
decord 0.6.0) on the dev clips with 3+ keyframes and on 720p/1080p clips made there: a seek costs 4-26 inter
frames, 0.4-1.1 keyframes (the model charges a keyframe + 2, erring towards one pass); a keyframe 4-40 inter
frames, which `keyframe_weight` follows from the packet sizes within about a factor 2; decord 1.0-1.4x
PyAV's time for the same frames.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

ReadMethod = Literal["decord", "seek", "sequential"]


@dataclass(frozen=True)
class DecodeCosts:
    keyframe: float = 10.0  # one intra frame, in inter frames (per file: `keyframe_weight`)
    seek: float = 2.0  # one PyAV seek besides the keyframe's lost overlap: demuxer seek, decoder flush
    decord_frame: float = 1.1  # decord decoding one frame, relative to PyAV (measured 1.0-1.4)
    decord_seek: float = 6.0  # one decord seek besides the keyframe (it rewinds to the start first)
    decord_demux: float = 0.015  # decord demuxes the whole file again to index it: per packet

    @property
    def seek_penalty(self) -> float:
        return self.keyframe + self.seek

    @property
    def decord_seek_penalty(self) -> float:
        return self.keyframe + self.decord_seek


def keyframe_weight(key_bytes: float, inter_bytes: float) -> float:
    """Decode time of a keyframe over an inter frame's, from their mean packet sizes.

    A fit of the measured ratio r_t to the size ratio r_s on the dev and bench clips: r_t = 2.5 r_s^0.6
    (r_s 2.8 -> 4.6 measured, 12 -> 10.5, 71 -> 22.5, 82 -> 30). 1 when every frame is a keyframe.
    """
    if inter_bytes <= 0 or key_bytes <= 0:
        return 1.0
    return min(max(2.5 * (key_bytes / inter_bytes) ** 0.6, 2.0), 50.0)


def costs_for(key_bytes: float, inter_bytes: float, base: DecodeCosts | None = None) -> DecodeCosts:
    """The cost model for one file: `base` with the keyframe weight of its packet sizes."""
    return replace(base or DecodeCosts(), keyframe=keyframe_weight(key_bytes, inter_bytes))


@dataclass(frozen=True)
class Segment:
    """One seek: decode from `keyframe` (a frame index) forward until the last of `wanted`."""

    keyframe: int
    wanted: tuple[int, ...]

    @property
    def last(self) -> int:
        return self.wanted[-1]


def keyframe_before(keyframes: Sequence[int], index: int) -> int:
    """The last keyframe at or before `index`; the first keyframe for frames before it."""
    position = bisect.bisect_right(keyframes, index) - 1
    return keyframes[max(position, 0)]


def count_keyframes(keyframes: Sequence[int], first: int, last: int) -> int:
    """Keyframes with first <= index <= last."""
    return bisect.bisect_right(keyframes, last) - bisect.bisect_left(keyframes, first)


def range_cost(keyframes: Sequence[int], first: int, last: int, costs: DecodeCosts) -> float:
    """Decoding frames first..last (inclusive); nothing when last < first."""
    if last < first:
        return 0.0
    return (last - first + 1) + (costs.keyframe - 1) * count_keyframes(keyframes, first, last)


def group_by_keyframe(keyframes: Sequence[int], indices: Sequence[int]) -> list[Segment]:
    """One segment per group of pictures that holds wanted frames (indices sorted, unique)."""
    groups: dict[int, list[int]] = {}
    for index in indices:
        groups.setdefault(keyframe_before(keyframes, index), []).append(index)
    return [Segment(key, tuple(wanted)) for key, wanted in groups.items()]


def plan_segments(keyframes: Sequence[int], indices: Sequence[int], costs: DecodeCosts) -> list[Segment]:
    """Seek segments: one per wanted group of pictures, neighbours merged where a seek costs more."""
    segments: list[Segment] = []
    for group in group_by_keyframe(keyframes, indices):
        if segments:
            previous = segments[-1]
            between = range_cost(keyframes, previous.last + 1, group.keyframe - 1, costs)
            if between <= costs.seek_penalty:
                segments[-1] = Segment(previous.keyframe, previous.wanted + group.wanted)
                continue
        segments.append(group)
    return segments


def seek_cost(keyframes: Sequence[int], segments: Sequence[Segment], costs: DecodeCosts) -> float:
    if not segments:
        return 0.0
    primed = segments[0].keyframe != keyframes[0]
    seeks = len(segments) - 1 + (1 if primed else 0)
    decoded = sum(range_cost(keyframes, s.keyframe, s.last, costs) for s in segments)
    return decoded + seeks * costs.seek_penalty + (costs.keyframe if primed else 0.0)


def sequential_cost(keyframes: Sequence[int], indices: Sequence[int], costs: DecodeCosts) -> float:
    return range_cost(keyframes, 0, indices[-1], costs) if indices else 0.0


def decord_reads(keyframes: Sequence[int], indices: Sequence[int]) -> tuple[list[tuple[int, int]], int]:
    """The frame ranges decord 0.6's get_batch decodes for sorted indices, and how many seeks it makes."""
    ranges: list[tuple[int, int]] = []
    seeks = 0
    position = 0  # the next frame its decoder would return
    for index in indices:
        key = keyframe_before(keyframes, index)
        if index < position or key != keyframe_before(keyframes, position):
            seeks += 1
            ranges.append((key, index))
        else:
            ranges.append((position, index))
        position = index + 1
    return ranges, seeks


def decord_batch(keyframes: Sequence[int], indices: Sequence[int]) -> list[int]:
    """The batch asked of decord: frame 0 first when the first wanted frame is past the first group.

    decord 0.6 decodes the first frame it seeks to with a decoder that never saw the stream's first
    keyframe; FFmpeg's H.264 decoder reads the encoder's version from that keyframe's SEI and applies
    bug workarounds by it (old x264 4:4:4 streams), so such a frame differs from a sequential decode.
    """
    if indices and len(keyframes) > 1 and indices[0] >= keyframes[1]:
        return [keyframes[0], *indices]
    return list(indices)


def decord_cost(
    keyframes: Sequence[int], frame_count: int, indices: Sequence[int], costs: DecodeCosts
) -> float:
    ranges, seeks = decord_reads(keyframes, decord_batch(keyframes, indices))
    decoded = sum(range_cost(keyframes, first, last, costs) for first, last in ranges)
    return costs.decord_demux * frame_count + costs.decord_frame * decoded + costs.decord_seek_penalty * seeks


def method_costs(
    keyframes: Sequence[int],
    frame_count: int,
    indices: Sequence[int],
    costs: DecodeCosts,
    allowed: Sequence[ReadMethod] = ("sequential", "seek", "decord"),
) -> dict[ReadMethod, float]:
    """The modelled cost of each allowed method for these sorted, unique indices."""
    table: dict[ReadMethod, float] = {}
    for method in allowed:
        if method == "sequential":
            table[method] = sequential_cost(keyframes, indices, costs)
        elif method == "seek":
            table[method] = seek_cost(keyframes, plan_segments(keyframes, indices, costs), costs)
        else:
            table[method] = decord_cost(keyframes, frame_count, indices, costs)
    return table


def choose_method(
    keyframes: Sequence[int],
    frame_count: int,
    indices: Sequence[int],
    costs: DecodeCosts,
    allowed: Sequence[ReadMethod] = ("sequential", "seek", "decord"),
) -> ReadMethod:
    """The cheapest allowed method; a tie goes to the earlier one in `allowed`."""
    table = method_costs(keyframes, frame_count, indices, costs, allowed)
    return min(allowed, key=lambda method: table[method])


def nearest_keyframes(keyframes: Sequence[int], indices: Sequence[int]) -> list[int]:
    """The keyframe nearest each index (the earlier one on a tie), sorted and unique."""
    picked: set[int] = set()
    for index in indices:
        position = bisect.bisect_right(keyframes, index)
        before = keyframes[max(position - 1, 0)]
        after = keyframes[min(position, len(keyframes) - 1)]
        picked.add(before if abs(index - before) <= abs(after - index) else after)
    return sorted(picked)


def spread_within(candidates: Sequence[int], count: int) -> list[int]:
    """`count` evenly spaced members of `candidates` (all of them when there are fewer)."""
    if len(candidates) <= count:
        return list(candidates)
    return [
        candidates[min(int((i + 0.5) * len(candidates) / count), len(candidates) - 1)] for i in range(count)
    ]


def suspicion_window(ordered: Sequence[int], position: int, frame_count: int) -> tuple[int, int]:
    """Frames closer to ordered[position] than to its first-pass neighbours (ties go to the earlier one)."""
    centre = ordered[position]
    first = (ordered[position - 1] + centre) // 2 + 1 if position > 0 else 0
    last = (centre + ordered[position + 1]) // 2 if position + 1 < len(ordered) else frame_count - 1
    return first, last


def pick_dense_indices(
    first_pass: Sequence[int],
    scores: Sequence[float | None],
    frame_count: int,
    extra: int,
    centres: int = 2,
) -> list[int]:
    """Second-pass frame indices: `extra` new frames around the `centres` most suspicious first-pass frames.

    `scores[k]` is the fake score of frame `first_pass[k]` (None or NaN: not scored, e.g. no face). Each
    chosen frame gets its share of `extra` (the more suspicious ones get the remainder), spread evenly over
    the frames nearer to it than to any other first-pass frame; first-pass frames are never picked again.
    """
    if len(first_pass) != len(scores):
        raise ValueError(f"{len(first_pass)} frame indices but {len(scores)} scores")
    scored = [
        (float(score), index)
        for index, score in zip(first_pass, scores, strict=True)
        if score is not None and not math.isnan(score) and 0 <= index < frame_count
    ]
    if extra <= 0 or centres <= 0 or not scored:
        return []
    chosen = sorted(scored, key=lambda pair: (-pair[0], pair[1]))[:centres]
    ordered = sorted(set(first_pass))
    taken = set(first_pass)
    share, remainder = divmod(extra, len(chosen))
    picked: set[int] = set()
    for rank, (_, centre) in enumerate(chosen):
        first, last = suspicion_window(ordered, ordered.index(centre), frame_count)
        candidates = [i for i in range(first, last + 1) if i not in taken]
        picked.update(spread_within(candidates, share + (1 if rank < remainder else 0)))
    return sorted(picked)
