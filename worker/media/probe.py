"""Probe: what a file is, read from its headers and checked against the input caps, before any decode.

The content decides, never the extension: the first bytes are sniffed, Pillow is tried on a whitelist of
image formats, then PyAV (FFmpeg) on everything else. The extension is only a hint when FFmpeg names a
family of containers ("mov,mp4,m4a,3gp,3g2,mj2").
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import NoReturn

import av
import av.container
import av.stream
import av.video.stream
from PIL import UnidentifiedImageError

from worker.errors import ErrorCode, MediaError
from worker.media.images import (
    check_pixels,
    decodable_image_kinds,
    name_pil_format,
    open_image,
    read_orientation,
)
from worker.media.types import MediaInfo
from worker.settings import MediaLimits

logger = logging.getLogger(__name__)

HEAD_BYTES = 512

IMAGE_KINDS = frozenset({"jpeg", "png", "gif", "tiff", "bmp", "webp", "avif"})  # Pillow formats we decode
OTHER_IMAGE_KINDS = frozenset({"heic"})
VIDEO_KINDS = frozenset(
    {"mp4", "mov", "3gp", "3g2", "mj2", "webm", "mkv", "avi", "flv", "ogg", "asf", "mpegts", "mpeg"}
)
AUDIO_KINDS = frozenset({"wav", "m4a", "mp3", "flac"})

_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_RIFF_KINDS = {b"WEBP": "webp", b"AVI ": "avi", b"WAVE": "wav"}
_QUICKTIME_TOP_BOXES = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip"})
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_HEIF_BRANDS = frozenset({"heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1"})
_CONTAINER_ALIASES = {"matroska": "mkv"}
_SUFFIX_ALIASES = {"jpg": "jpeg", "m4v": "mp4", "qt": "mov", "3gpp": "3gp"}
# FFmpeg demuxers that read still images: a file only they can open is an image Pillow refused.
_IMAGE_DEMUXERS = frozenset({"image2", "gif", "apng", "ico", "webp", "jpegxl_anim"})


def name_iso_brand(brand: bytes) -> str:
    """ISO base media (ftyp) major brand -> short format name."""
    name = brand.decode("latin-1").strip().lower()
    if name in ("avif", "avis"):
        return "avif"
    if name in _HEIF_BRANDS:
        return "heic"
    if name == "qt":
        return "mov"
    if name.startswith(("m4a", "m4b", "m4p")):
        return "m4a"
    if name.startswith("3g2"):
        return "3g2"
    if name.startswith("3g"):
        return "3gp"
    if name in ("mjp2", "mj2s"):
        return "mj2"
    return "mp4"  # isom, iso2..iso9, mp41, mp42, avc1, dash, M4V, ...


def sniff_signature(head: bytes) -> str | None:
    """Short format name from a file's first bytes; None when nothing known matches."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "bmp"
    if head[:4] == b"RIFF":
        return _RIFF_KINDS.get(head[8:12])
    if head[4:8] == b"ftyp":
        return name_iso_brand(head[8:12])
    if head[4:8] in _QUICKTIME_TOP_BOXES:
        return "mov"
    return sniff_other_signature(head)


def sniff_other_signature(head: bytes) -> str | None:
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in head[:64] else "mkv"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:16] == _ASF_GUID:
        return "asf"
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "mpegts"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpeg"
    if head[:3] == b"ID3" or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "mp3"
    if head[:4] == b"fLaC":
        return "flac"
    return None


def probe_media(path: Path, limits: MediaLimits) -> MediaInfo:
    """Identify an image or a video and check it against the caps; raises MediaError otherwise."""
    size = path.stat().st_size
    if size == 0:
        raise MediaError(ErrorCode.EMPTY, "file is empty")
    if size > limits.max_bytes:
        raise MediaError(ErrorCode.TOO_LARGE, f"file is {size} bytes; the limit is {limits.max_bytes} bytes")
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    kind = sniff_signature(head)
    info = probe_image(path, size, kind, limits)
    if info is None:
        if kind in decodable_image_kinds():
            raise MediaError(ErrorCode.CORRUPT, f"looks like {kind} but the image header cannot be read")
        if kind in IMAGE_KINDS or kind in OTHER_IMAGE_KINDS:
            raise MediaError(ErrorCode.UNSUPPORTED, f"{kind} images are not supported")
        info = probe_video(path, size, kind, limits)
    logger.debug("probed %s: %s", path.name, info)
    return info


def probe_image(path: Path, size: int, kind: str | None, limits: MediaLimits) -> MediaInfo | None:
    """Read an image's size and orientation without decoding it; None when Pillow does not know it."""
    try:
        with open_image(path, limits.max_pixels) as image:
            width, height = image.size
            check_pixels(width, height, limits, "image")
            name = name_pil_format(image)
            if read_orientation(image) in (5, 6, 7, 8):
                width, height = height, width
    except MediaError:
        raise
    except UnidentifiedImageError:
        return None
    except Exception as exc:  # a plugin accepted the signature, then failed on the header
        logger.info("image header of %s unreadable: %s: %s", path.name, type(exc).__name__, exc)
        if kind in IMAGE_KINDS:
            raise MediaError(ErrorCode.CORRUPT, f"{kind} header cannot be read") from None
        return None
    return MediaInfo(
        kind="image",
        format=name,
        codec=name,
        width=width,
        height=height,
        duration_s=None,
        fps=None,
        frame_count=1,
        size_bytes=size,
    )


def open_container(path: Path, kind: str | None) -> av.container.InputContainer:
    """av.open, with FFmpeg's failures turned into MediaError by what the first bytes promised."""
    try:
        return av.open(str(path), mode="r", metadata_errors="replace")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        if kind in VIDEO_KINDS:
            message = f"looks like {kind} but cannot be opened ({reason})"
            raise MediaError(ErrorCode.CORRUPT, message) from None
        if kind in AUDIO_KINDS:
            raise MediaError(ErrorCode.UNSUPPORTED, f"{kind} audio is not analysed") from None
        raise MediaError(ErrorCode.NOT_MEDIA, "not an image or a video this service can read") from None


def find_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The first real video stream; cover art (attached pictures) does not count."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def name_container(format_name: str, kind: str | None, suffix: str) -> str:
    """FFmpeg demuxer name(s) -> one short name; sniffed kind, then extension, break a family's tie."""
    candidates = [_CONTAINER_ALIASES.get(name, name) for name in format_name.split(",") if name]
    if not candidates:
        return "unknown"
    if len(candidates) > 1:
        ext = suffix.lower().lstrip(".")
        for hint in (kind, _SUFFIX_ALIASES.get(ext, ext)):
            if hint in candidates:
                return hint
    return candidates[0]


def is_image_demuxer(format_name: str) -> bool:
    return format_name.endswith("_pipe") or format_name in _IMAGE_DEMUXERS


def refuse_non_video(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream | None,
    name: str,
    kind: str | None,
) -> NoReturn:
    """Raise for a container FFmpeg opened that holds no video this service analyses."""
    if is_image_demuxer(container.format.name):
        if kind in IMAGE_KINDS:
            raise MediaError(ErrorCode.CORRUPT, f"looks like {kind} but cannot be decoded")
        if kind is None:  # FFmpeg guessed an image format from the file name alone
            raise MediaError(ErrorCode.NOT_MEDIA, "not an image or a video this service can read")
        image_format = stream.codec_context.name if stream is not None else name.removesuffix("_pipe")
        raise MediaError(ErrorCode.UNSUPPORTED, f"{image_format} images are not supported")
    if container.streams.audio:
        audio = container.streams.audio[0].codec.canonical_name
        raise MediaError(ErrorCode.UNSUPPORTED, f"audio only ({name}, {audio}): no video to analyse")
    raise MediaError(ErrorCode.NOT_MEDIA, f"{name} file holds no video stream")


def read_rate(stream: av.video.stream.VideoStream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return None


def read_duration(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> float | None:
    seconds: float | None = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = float(Fraction(container.duration, av.time_base))
    return seconds if seconds is not None and seconds > 0 else None


def read_codec(stream: av.video.stream.VideoStream) -> str:
    """The codec's canonical name ("av1"), not the decoder's ("libdav1d")."""
    try:
        name: str | None = stream.codec_context.codec.canonical_name
    except (AttributeError, av.FFmpegError):
        name = None
    if not name:
        raise MediaError(ErrorCode.UNSUPPORTED, "the video codec cannot be decoded here")
    return name


def read_video_info(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, name: str, size: int
) -> MediaInfo:
    duration = read_duration(container, stream)
    fps = read_rate(stream)
    frames: int | None = stream.frames if stream.frames > 0 else None
    if fps is None and frames and duration:
        fps = frames / duration
    if frames is None and duration and fps:
        frames = max(1, round(duration * fps))
    context = stream.codec_context
    return MediaInfo(
        kind="video",
        format=name,
        codec=read_codec(stream),
        width=context.width,
        height=context.height,
        duration_s=duration,
        fps=fps,
        frame_count=frames,
        size_bytes=size,
    )


def format_number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def check_video_limits(info: MediaInfo, limits: MediaLimits) -> None:
    check_pixels(info.width, info.height, limits, "video")
    if info.duration_s is not None and info.duration_s > limits.max_duration_s:
        raise MediaError(
            ErrorCode.TOO_LONG,
            f"video is {format_number(info.duration_s)} s long; "
            f"the limit is {format_number(limits.max_duration_s)} s",
        )
    if info.frame_count is not None and info.frame_count > limits.max_frames:
        raise MediaError(
            ErrorCode.TOO_LONG, f"video declares {info.frame_count} frames; the limit is {limits.max_frames}"
        )
    if info.fps is not None and info.fps > limits.max_fps:
        raise MediaError(
            ErrorCode.TOO_LONG,
            f"video declares {format_number(info.fps)} fps; the limit is {format_number(limits.max_fps)} fps",
        )


def probe_video(path: Path, size: int, kind: str | None, limits: MediaLimits) -> MediaInfo:
    with open_container(path, kind) as container:
        name = name_container(container.format.name, kind, path.suffix)
        stream = find_video_stream(container)
        if stream is None or is_image_demuxer(container.format.name):
            refuse_non_video(container, stream, name, kind)
        info = read_video_info(container, stream, name, size)
    check_video_limits(info, limits)
    return info
