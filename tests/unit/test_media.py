"""worker.media on real files: the shared dev set and small images and videos made here with PIL and PyAV.

Nothing is mocked: every probe and decode goes through Pillow, FFmpeg (PyAV) and decord. Synthetic videos
paint frame i in one flat colour, R = 8 * i, G = 255 - 8 * i, so a decoded frame says which one it is.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import struct
import zlib
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import av.audio.stream
import av.video.stream
import numpy as np
import pytest
from PIL import Image, ImageFile

from worker.errors import ErrorCode, MediaError
from worker.media import Frame, FrameSample, MediaInfo, load_image, probe_media, sample_frames
from worker.media.frames import pick_frame_indices
from worker.media.probe import sniff_signature
from worker.settings import MediaLimits, SamplingMethod

SHARED_DIR = Path(os.environ.get("DFW_SHARED_DIR") or Path(__file__).resolve().parents[2].parent / "shared")
DEV_DIR = SHARED_DIR / "data" / "dev"
MANIFEST = DEV_DIR / "manifest.csv"
needs_dev = pytest.mark.skipif(not MANIFEST.is_file(), reason=f"dev set not found under {SHARED_DIR}")

LIMITS = MediaLimits()
DECODERS: tuple[tuple[SamplingMethod, str], ...] = (("decord", "decord"), ("sequential", "pyav-sequential"))
CODEC_BY_FORMAT = {"mp4": "h264", "webm": "vp8", "avi": "mpeg4"}
SMALL_MP4 = "fake/inthewild_video/itw_FakeObama.mp4"  # 390x404, 49 frames, moov first
MOOV_FIRST_MP4 = "real/inthewild_video/itw_RealTaxi.mp4"  # 276x280, 69 frames, moov first
MOOV_LAST_MP4 = "real/ffpp_video/ffpp_youtube_004.mp4"  # 1280x720, moov after mdat
DEV_WEBM = "fake/ffpp_video_transcoded/ffpp_Deepfakes_519_515.webm"
DEV_AVI = "fake/ffpp_video_transcoded/ffpp_Deepfakes_519_515.avi"


def read_manifest() -> dict[str, dict[str, str]]:
    if not MANIFEST.is_file():
        return {}
    with MANIFEST.open(newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


ROWS = read_manifest()
VIDEO_ROWS = [path for path, row in ROWS.items() if row["media"] == "video"]


def first_row(source: str, fmt: str) -> str:
    return next(path for path, row in ROWS.items() if row["source"] == source and row["format"] == fmt)


def find_webp_named_jpg() -> str:
    found = []
    for path in ROWS:
        if path.startswith("real/deepface_photos/"):
            with (DEV_DIR / path).open("rb") as handle:
                head = handle.read(12)
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                found.append(path)
    assert len(found) == 1, found
    return found[0]


def expect_error(code: ErrorCode, path: Path, limits: MediaLimits = LIMITS) -> MediaError:
    with pytest.raises(MediaError) as caught:
        probe_media(path, limits)
    assert caught.value.code == code, caught.value.message
    return caught.value


# ---------------------------------------------------------------- synthetic media


def paint(index: int, width: int = 64, height: int = 48) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = (8 * index, 255 - 8 * index, 128)
    return image


def read_index(frame: Frame) -> int:
    red = float(frame.image[..., 0].mean())
    green = float(frame.image[..., 1].mean())
    assert abs(red + green - 255) < 8, (red, green)
    return round(red / 8)


def encode_video(
    path: Path,
    codec: str,
    frames: int = 30,
    rate: int = 30,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        stream.options = dict(options or {})
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(paint(index), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def encode_audio(path: Path, codec: str, sample_format: str, dtype: type[np.generic]) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=8000)
        assert isinstance(stream, av.audio.stream.AudioStream)
        samples = np.zeros((1, 4096), dtype=dtype)
        frame = av.AudioFrame.from_ndarray(samples, format=sample_format, layout="mono")
        frame.sample_rate = 8000
        frame.time_base = Fraction(1, 8000)
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def h264_mp4(video_dir: Path) -> Path:
    return encode_video(video_dir / "colours.mp4", "libx264", options={"qp": "0"})


# ---------------------------------------------------------------- index planning


def test_pick_frame_indices_spacing() -> None:
    assert pick_frame_indices(30, 8) == [2, 6, 9, 13, 17, 21, 24, 28]
    assert pick_frame_indices(1000, 1) == [500]
    assert pick_frame_indices(5, 8) == [0, 1, 2, 3, 4]
    assert pick_frame_indices(8, 8) == list(range(8))
    assert pick_frame_indices(0, 4) == []
    for count in range(1, 120):
        for wanted in (1, 2, 3, 7, 16):
            picked = pick_frame_indices(count, wanted)
            assert len(picked) == min(count, wanted)
            assert picked == sorted(set(picked))
            assert picked[0] >= 0 and picked[-1] <= count - 1


# ---------------------------------------------------------------- dev set: images


def dev_image_cases() -> list[str]:
    if not ROWS:
        return []
    return [
        first_row("utkface", "jpeg"),
        first_row("ffpp_cnndetection", "png"),
        first_row("sfhq_t2i_tiles", "jpeg"),
        find_webp_named_jpg(),
    ]


@needs_dev
@pytest.mark.parametrize("rel", dev_image_cases())
def test_dev_image_probe_and_load(rel: str) -> None:
    row = ROWS[rel]
    path = DEV_DIR / rel
    info = probe_media(path, LIMITS)
    assert (info.kind, info.format, info.codec) == ("image", row["format"], row["format"])
    assert (info.width, info.height) == (int(row["width"]), int(row["height"]))
    assert (info.frame_count, info.duration_s, info.fps) == (1, None, None)
    assert info.size_bytes == int(row["bytes"])
    sample = sample_frames(path, info, LIMITS, 16)
    assert (sample.method, sample.requested, sample.decoded) == ("image", 1, 1)
    image = sample.frames[0].image
    assert image.shape == (info.height, info.width, 3) and image.dtype == np.uint8
    assert image.flags["C_CONTIGUOUS"]


@needs_dev
def test_webp_named_jpg_is_sniffed_by_content() -> None:
    rel = find_webp_named_jpg()
    assert rel.endswith(".jpg")
    assert probe_media(DEV_DIR / rel, LIMITS).format == "webp"


# ---------------------------------------------------------------- dev set: videos


@needs_dev
@pytest.mark.parametrize("rel", VIDEO_ROWS)
def test_dev_video_probe_matches_manifest(rel: str) -> None:
    row = ROWS[rel]
    info = probe_media(DEV_DIR / rel, LIMITS)
    assert (info.kind, info.format, info.codec) == ("video", row["format"], CODEC_BY_FORMAT[row["format"]])
    assert (info.width, info.height) == (int(row["width"]), int(row["height"]))
    assert info.fps == pytest.approx(float(row["fps"]), abs=0.01)
    assert info.duration_s == pytest.approx(float(row["seconds"]), abs=0.01)
    assert info.frame_count == int(row["frames"])
    assert info.size_bytes == int(row["bytes"])


@needs_dev
@pytest.mark.parametrize("rel", [SMALL_MP4, DEV_WEBM, DEV_AVI])
def test_dev_video_sampling_with_decord(rel: str) -> None:
    row = ROWS[rel]
    info = probe_media(DEV_DIR / rel, LIMITS)
    sample = sample_frames(DEV_DIR / rel, info, LIMITS, 8, method="decord")
    assert (sample.method, sample.requested, sample.decoded) == ("decord", 8, 8)
    assert [f.index for f in sample.frames] == pick_frame_indices(int(row["frames"]), 8)
    for frame in sample.frames:
        assert frame.image.shape == (info.height, info.width, 3) and frame.image.dtype == np.uint8
        assert frame.image.flags["C_CONTIGUOUS"]
        assert frame.timestamp_s == pytest.approx(frame.index / float(row["fps"]), abs=1e-3)


@needs_dev
@pytest.mark.parametrize("rel", [SMALL_MP4, DEV_WEBM, DEV_AVI])
def test_decord_and_pyav_frames_are_pixel_identical(rel: str) -> None:
    path = DEV_DIR / rel
    info = probe_media(path, LIMITS)
    by_decord = sample_frames(path, info, LIMITS, 6, method="decord")
    by_pyav = sample_frames(path, info, LIMITS, 6, method="sequential")
    assert (by_decord.method, by_pyav.method) == ("decord", "pyav-sequential")
    assert [f.index for f in by_decord.frames] == [f.index for f in by_pyav.frames]
    for ours, theirs in zip(by_decord.frames, by_pyav.frames, strict=True):
        assert np.array_equal(ours.image, theirs.image), ours.index
        assert ours.timestamp_s == pytest.approx(theirs.timestamp_s, abs=1e-3)


@needs_dev
def test_dev_video_over_caps_is_too_long() -> None:
    path = DEV_DIR / SMALL_MP4
    error = expect_error(ErrorCode.TOO_LONG, path, MediaLimits(max_duration_s=2))
    assert error.message == "video is 3.92 s long; the limit is 2 s"
    error = expect_error(ErrorCode.TOO_LONG, path, MediaLimits(max_frames=10))
    assert "49 frames" in error.message
    error = expect_error(ErrorCode.TOO_MANY_PIXELS, path, MediaLimits(max_pixels=100_000))
    assert "390x404" in error.message


# ---------------------------------------------------------------- synthetic videos


def test_sampling_picks_uniform_frames_by_colour(h264_mp4: Path) -> None:
    info = probe_media(h264_mp4, LIMITS)
    assert (info.format, info.codec, info.width, info.height) == ("mp4", "h264", 64, 48)
    assert (info.frame_count, info.fps) == (30, 30.0)
    expected = [2, 6, 9, 13, 17, 21, 24, 28]
    for method, name in DECODERS:
        sample = sample_frames(h264_mp4, info, LIMITS, 8, method=method)
        assert sample.method == name
        assert [f.index for f in sample.frames] == expected
        assert [read_index(f) for f in sample.frames] == expected
        assert [f.timestamp_s for f in sample.frames] == pytest.approx([i / 30 for i in expected], abs=1e-3)


def test_short_video_returns_every_frame(h264_mp4: Path) -> None:
    info = probe_media(h264_mp4, LIMITS)
    sample = sample_frames(h264_mp4, info, LIMITS, 40)
    assert (sample.requested, sample.decoded) == (30, 30)
    assert [read_index(f) for f in sample.frames] == list(range(30))


def test_pyav_counts_frames_when_none_declared(h264_mp4: Path) -> None:
    info = dataclasses.replace(probe_media(h264_mp4, LIMITS), frame_count=None)
    sample = sample_frames(h264_mp4, info, LIMITS, 3, method="sequential")
    assert [read_index(f) for f in sample.frames] == pick_frame_indices(30, 3) == [5, 15, 25]


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt", "expected"),
    [
        ("vp9.webm", "libvpx-vp9", "yuv420p", ("webm", "vp9")),
        ("ffv1.mkv", "ffv1", "yuv420p", ("mkv", "ffv1")),
        ("qtrle.mov", "qtrle", "rgb24", ("mov", "qtrle")),
        ("mjpeg.avi", "mjpeg", "yuvj420p", ("avi", "mjpeg")),
        ("h264-named.mov", "libx264", "yuv420p", ("mov", "h264")),
    ],
)
def test_container_short_names(
    video_dir: Path, name: str, codec: str, pix_fmt: str, expected: tuple[str, str]
) -> None:
    path = encode_video(video_dir / name, codec, frames=10, pix_fmt=pix_fmt)
    info = probe_media(path, LIMITS)
    assert (info.format, info.codec) == expected
    sample = sample_frames(path, info, LIMITS, 4)
    assert [read_index(f) for f in sample.frames] == pick_frame_indices(10, 4)


def test_extension_is_only_a_hint(h264_mp4: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "movie.jpg"
    disguised.write_bytes(h264_mp4.read_bytes())
    assert (probe_media(disguised, LIMITS).kind, probe_media(disguised, LIMITS).format) == ("video", "mp4")
    png_as_mp4 = tmp_path / "picture.mp4"
    Image.new("RGB", (8, 4), (1, 2, 3)).save(png_as_mp4, format="PNG")
    assert (probe_media(png_as_mp4, LIMITS).kind, probe_media(png_as_mp4, LIMITS).format) == ("image", "png")


@pytest.mark.skipif("libsvtav1" not in av.codecs_available, reason="no AV1 encoder in this PyAV build")
def test_av1_falls_back_to_pyav(video_dir: Path) -> None:
    path = encode_video(video_dir / "av1.mkv", "libsvtav1")
    info = probe_media(path, LIMITS)
    assert (info.format, info.codec) == ("mkv", "av1")
    sample = sample_frames(path, info, LIMITS, 8, method="decord")
    assert sample.method == "pyav-sequential"  # decord 0.6.0 has no AV1 decoder: it cannot open the file
    assert [read_index(f) for f in sample.frames] == pick_frame_indices(30, 8)


def test_high_frame_rate_is_too_long(h264_mp4: Path) -> None:
    error = expect_error(ErrorCode.TOO_LONG, h264_mp4, MediaLimits(max_fps=10))
    assert error.message == "video declares 30 fps; the limit is 10 fps"


def test_video_with_no_decodable_frame(h264_mp4: Path, tmp_path: Path) -> None:
    data = bytearray(h264_mp4.read_bytes())
    start = data.index(b"mdat") - 4
    (size,) = struct.unpack(">I", data[start : start + 4])
    data[start + 8 : start + size] = bytes(size - 8)  # every NAL unit zeroed; moov intact
    path = tmp_path / "zeroed.mp4"
    path.write_bytes(bytes(data))
    info = probe_media(path, LIMITS)
    for method, _ in DECODERS:
        with pytest.raises(MediaError) as caught:
            sample_frames(path, info, LIMITS, 8, method=method)
        assert caught.value.code == ErrorCode.NO_FRAMES


# ---------------------------------------------------------------- truncated videos


@needs_dev
def test_truncated_mp4_without_index_is_corrupt(tmp_path: Path) -> None:
    data = (DEV_DIR / MOOV_LAST_MP4).read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * 0.3)])
    error = expect_error(ErrorCode.CORRUPT, path)
    assert error.message.startswith("looks like mp4 but cannot be opened")


@needs_dev
def test_truncated_mp4_with_index_decodes_a_prefix(tmp_path: Path) -> None:
    data = (DEV_DIR / MOOV_FIRST_MP4).read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * 0.3)])
    info = probe_media(path, LIMITS)
    assert (info.frame_count, info.width, info.height) == (69, 276, 280)  # the header still declares it all
    planned = pick_frame_indices(69, 16)
    sample = sample_frames(path, info, LIMITS, 16)
    assert sample.method == "pyav-sequential"  # demuxing stops early: frames are numbered as they come out
    assert sample.requested == 16 and 0 < sample.decoded < 16
    assert [f.index for f in sample.frames] == planned[: sample.decoded]


# ---------------------------------------------------------------- images made here


def test_exif_rotated_jpeg(tmp_path: Path) -> None:
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red
    pixels[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())
    info = probe_media(path, LIMITS)
    assert (info.width, info.height) == (20, 40)
    image = load_image(path, info, LIMITS).image
    assert image.shape == (40, 20, 3)
    assert np.abs(image[5, 10].astype(int) - (255, 0, 0)).max() < 10  # left is now the top
    assert np.abs(image[35, 10].astype(int) - (0, 0, 255)).max() < 10


def save_cmyk(path: Path) -> None:
    Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(path, format="JPEG", quality=95)


def save_png16(path: Path) -> None:
    Image.fromarray(np.full((10, 20), 0x8000, np.uint16)).save(path, format="PNG")


def save_la(path: Path) -> None:
    pixels = np.zeros((10, 20, 2), np.uint8)
    pixels[:, :, 0] = 100
    pixels[:, 10:, 1] = 255  # left half fully transparent
    Image.fromarray(pixels, mode="LA").save(path, format="PNG")


def save_palette(path: Path) -> None:
    image = Image.new("P", (20, 10), 0)
    image.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    image.save(path, format="PNG")


def save_rgba(path: Path) -> None:
    Image.new("RGBA", (20, 10), (0, 200, 0, 0)).save(path, format="PNG")


def save_bilevel(path: Path) -> None:
    Image.new("1", (20, 10), 1).save(path, format="PNG")


def save_gif(path: Path) -> None:
    red, blue = Image.new("RGB", (20, 10), (255, 0, 0)), Image.new("RGB", (20, 10), (0, 0, 255))
    red.save(path, format="GIF", save_all=True, append_images=[blue], duration=100, loop=0)


def save_webp(path: Path) -> None:
    red, blue = Image.new("RGB", (20, 10), (255, 0, 0)), Image.new("RGB", (20, 10), (0, 0, 255))
    red.save(path, format="WEBP", save_all=True, append_images=[blue], duration=100, lossless=True)


@pytest.mark.parametrize(
    ("save", "fmt", "left", "right"),
    [
        (save_cmyk, "jpeg", (255, 0, 0), (255, 0, 0)),
        (save_png16, "png", (128, 128, 128), (128, 128, 128)),
        (save_la, "png", (255, 255, 255), (100, 100, 100)),  # transparent -> white background
        (save_palette, "png", (10, 20, 30), (10, 20, 30)),
        (save_rgba, "png", (255, 255, 255), (255, 255, 255)),
        (save_bilevel, "png", (255, 255, 255), (255, 255, 255)),
        (save_gif, "gif", (255, 0, 0), (255, 0, 0)),  # first frame of an animation
        (save_webp, "webp", (255, 0, 0), (255, 0, 0)),
    ],
    ids=["cmyk", "png16", "la", "palette", "rgba", "bilevel", "animated-gif", "animated-webp"],
)
def test_any_image_mode_becomes_rgb(
    tmp_path: Path,
    save: Callable[[Path], None],
    fmt: str,
    left: tuple[int, int, int],
    right: tuple[int, int, int],
) -> None:
    path = tmp_path / "image.bin"
    save(path)
    info = probe_media(path, LIMITS)
    assert (info.kind, info.format, info.width, info.height) == ("image", fmt, 20, 10)
    image = load_image(path, info, LIMITS).image
    assert image.shape == (10, 20, 3) and image.dtype == np.uint8
    assert image.flags["C_CONTIGUOUS"] and image.flags["WRITEABLE"]
    assert np.abs(image[5, 2].astype(int) - left).max() <= 3
    assert np.abs(image[5, 17].astype(int) - right).max() <= 3


# ---------------------------------------------------------------- bad input


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert expect_error(ErrorCode.EMPTY, path).message == "file is empty"


def test_text_named_mp4_is_not_media(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("these are meeting notes, not a video\n" * 40)
    expect_error(ErrorCode.NOT_MEDIA, path)


def test_random_bytes_are_not_media(tmp_path: Path) -> None:
    path = tmp_path / "noise.bin"
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    assert sniff_signature(path.read_bytes()[:512]) is None
    expect_error(ErrorCode.NOT_MEDIA, path)


def test_png_signature_then_garbage_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    noise = np.random.default_rng(11).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + noise)
    expect_error(ErrorCode.CORRUPT, path)


def bomb_png(path: Path) -> Path:
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)  # 30000x30000 RGB, 8 bits
    pixels = zlib.compress(b"\x00" * 64)
    data = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + data)
    return path


def test_png_declaring_30000_squared_is_refused_unread(tmp_path: Path) -> None:
    path = bomb_png(tmp_path / "bomb.png")
    assert path.stat().st_size < 200
    error = expect_error(ErrorCode.TOO_MANY_PIXELS, path)
    assert "the limit is 80.0 MP" in error.message
    # load_image guards itself too, whatever MediaInfo it is handed
    info = MediaInfo("image", "png", "png", 8, 8, None, None, 1, path.stat().st_size)
    with pytest.raises(MediaError) as caught:
        load_image(path, info, LIMITS)
    assert caught.value.code == ErrorCode.TOO_MANY_PIXELS


def test_pixel_cap_between_pil_guard_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (20, 10)).save(path)
    error = expect_error(ErrorCode.TOO_MANY_PIXELS, path, MediaLimits(max_pixels=150))
    assert error.message.startswith("image is 20x10")


def test_file_over_max_bytes_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"\x00" * 2000)  # not media either: the size check must come first
    error = expect_error(ErrorCode.TOO_LARGE, path, MediaLimits(max_bytes=1000))
    assert error.message == "file is 2000 bytes; the limit is 1000 bytes"


@needs_dev
@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_truncated_image_is_corrupt_at_load(tmp_path: Path, fmt: str) -> None:
    source = DEV_DIR / first_row("utkface" if fmt == "jpeg" else "ffpp_cnndetection", fmt)
    data = source.read_bytes()
    path = tmp_path / f"cut.{fmt}"
    path.write_bytes(data[: len(data) // 2])
    info = probe_media(path, LIMITS)  # headers are intact: the probe cannot tell
    assert info.kind == "image"
    with pytest.raises(MediaError) as caught:
        load_image(path, info, LIMITS)
    assert caught.value.code == ErrorCode.CORRUPT


@needs_dev
def test_truncated_images_stay_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = (DEV_DIR / first_row("utkface", "jpeg")).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(MediaError) as caught:
        load_image(path, probe_media(path, LIMITS), LIMITS)
    assert caught.value.code == ErrorCode.CORRUPT
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    ("name", "codec", "sample_format", "dtype"),
    [("tone.wav", "pcm_s16le", "s16", np.int16), ("tone.m4a", "aac", "fltp", np.float32)],
)
def test_audio_only_is_unsupported(
    tmp_path: Path, name: str, codec: str, sample_format: str, dtype: type[np.generic]
) -> None:
    path = encode_audio(tmp_path / name, codec, sample_format, dtype)
    error = expect_error(ErrorCode.UNSUPPORTED, path)
    assert error.message.startswith("audio only")


# ---------------------------------------------------------------- types


def test_media_info_to_dict_is_json(h264_mp4: Path, tmp_path: Path) -> None:
    image_path = tmp_path / "x.png"
    Image.new("RGB", (4, 3)).save(image_path)
    for info in (probe_media(h264_mp4, LIMITS), probe_media(image_path, LIMITS)):
        payload = json.loads(json.dumps(info.to_dict()))
        assert payload == dataclasses.asdict(info)
        assert set(payload) == {f.name for f in dataclasses.fields(MediaInfo)}


def test_frame_sample_shape(h264_mp4: Path) -> None:
    sample = sample_frames(h264_mp4, probe_media(h264_mp4, LIMITS), LIMITS, 2)
    assert isinstance(sample, FrameSample) and sample.decoded == len(sample.frames) == 2


def test_public_api() -> None:
    import worker.media

    expected = {"Frame", "FrameSample", "MediaInfo", "load_image", "probe_media", "sample_frames"}
    assert set(worker.media.__all__) == expected
