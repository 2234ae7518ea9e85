"""A corpus of hostile and unusual inputs, generated in the test (nothing committed)."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tests.unit.test_media import encode_audio, encode_video, png_chunk


@dataclass(frozen=True)
class Case:
    name: str  # local file name
    key: str  # S3 key it is uploaded under
    expect: str | None  # an error code or "verdict"; None: any verdict or stable error code


def png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def face(dev: Path, number: int) -> Image.Image:
    paths = sorted((dev / "real" / "utkface").glob("*.jpg"))
    return Image.open(paths[number]).convert("RGB")


def save(image: Image.Image, path: Path, fmt: str, **options: object) -> None:
    image.save(path, format=fmt, **options)


def video_with_pts(path: Path, pts_seconds: list[float], rate: int = 25) -> None:
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = Fraction(1, rate)
        for index, seconds in enumerate(pts_seconds):
            frame = av.VideoFrame.from_ndarray(
                np.full((48, 64, 3), 40 * index % 255, np.uint8), format="rgb24"
            )
            frame.pts = round(seconds * rate)
            frame.time_base = Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def zero_frames(path: Path) -> None:
    """An mp4 with a video stream declared and no frame at all."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()


def two_video_streams(path: Path) -> None:
    with av.open(str(path), mode="w", format="matroska") as container:
        streams = [container.add_stream("mpeg4", rate=10) for _ in range(2)]
        for stream in streams:
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(10):
            for stream in streams:
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * index, np.uint8), format="rgb24")
                container.mux(stream.encode(frame))
        for stream in streams:
            container.mux(stream.encode(None))


def build_corpus(root: Path, dev: Path) -> list[Case]:
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    mp4 = (dev / "real/inthewild_video/itw_RealTaxi.mp4").read_bytes()
    webm = (dev / "real/ffpp_video_transcoded/ffpp_youtube_004.webm").read_bytes()
    jpeg_bytes = (dev / "real/deepface_photos/deepface_img10.jpg").read_bytes()
    cases: list[Case] = []
    writers: list[tuple[str, str, str | None, Callable[[Path], object]]] = [
        ("zero.jpg", "hostile/zero.jpg", "empty", lambda p: p.write_bytes(b"")),
        ("text.mp4", "hostile/text.mp4", "not_media", lambda p: p.write_text("just text\n" * 100)),
        ("page.png", "hostile/page.png", "not_media", lambda p: p.write_text("<html><body>hi</body></html>")),
        ("archive.mp4", "hostile/archive.mp4", "not_media", lambda p: p.write_bytes(zip_bytes())),
        ("elf.jpg", "hostile/elf.jpg", "not_media", lambda p: p.write_bytes(b"\x7fELF" + bytes(4000))),
        (
            "svg.jpg",
            "hostile/svg.jpg",
            "not_media",
            lambda p: p.write_text('<svg xmlns="http://www.w3.org/2000/svg"/>'),
        ),
        (
            "random-png.png",
            "hostile/random-png.png",
            None,
            lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + rng.randbytes(5000)),
        ),
        (
            "bomb.png",
            "hostile/bomb.png",
            "too_many_pixels",
            lambda p: p.write_bytes(png_header_only(30000, 30000)),
        ),
        (
            "wide.png",
            "hostile/wide.png",
            "too_many_pixels",
            lambda p: p.write_bytes(png_header_only(2**31 - 1, 1)),
        ),
        ("truncated.mp4", "hostile/truncated.mp4", None, lambda p: p.write_bytes(mp4[: len(mp4) * 3 // 10])),
        ("bitflip.mp4", "hostile/bitflip.mp4", None, lambda p: p.write_bytes(flip(mp4, rng, 300))),
        ("truncated.webm", "hostile/truncated.webm", None, lambda p: p.write_bytes(webm[: len(webm) // 5])),
        (
            "truncated.jpg",
            "hostile/truncated.jpg",
            "corrupt",
            lambda p: p.write_bytes(jpeg_bytes[: len(jpeg_bytes) // 3]),
        ),
        (
            "fast.mp4",
            "hostile/fast.mp4",
            "too_long",
            lambda p: encode_video(p, "mpeg4", frames=10, rate=5000),
        ),
        ("long.mp4", "hostile/long.mp4", "too_long", lambda p: video_with_pts(p, [0.0, 6 * 3600.0])),
        ("zero-frames.mp4", "hostile/zero-frames.mp4", None, zero_frames),
        (
            "audio.wav",
            "hostile/audio.wav",
            "unsupported",
            lambda p: encode_audio(p, "pcm_s16le", "s16", np.int16),
        ),
        (
            "audio.m4a",
            "hostile/audio.m4a",
            "unsupported",
            lambda p: encode_audio(p, "aac", "fltp", np.float32),
        ),
        ("two-streams.mkv", "hostile/two-streams.mkv", "verdict", two_video_streams),
        ("tiny.mp4", "hostile/tiny.mp4", "verdict", lambda p: encode_video(p, "mpeg4", frames=5)),
        ("animated.gif", "hostile/animated.gif", "verdict", lambda p: animated_gif(dev, p)),
        ("cmyk.jpg", "hostile/cmyk.jpg", "verdict", lambda p: save(face(dev, 1).convert("CMYK"), p, "JPEG")),
        ("deep.png", "hostile/deep.png", "verdict", lambda p: sixteen_bit(dev, p)),
        (
            "gray-alpha.png",
            "hostile/gray-alpha.png",
            "verdict",
            lambda p: save(face(dev, 3).convert("LA"), p, "PNG"),
        ),
        ("rotated.jpg", "hostile/rotated.jpg", "verdict", lambda p: rotated(dev, p)),
        ("png-named.jpg", "hostile/png-named.jpg", "verdict", lambda p: save(face(dev, 5), p, "PNG")),
        ("photo.webp", "hostile/photo.webp", "verdict", lambda p: save(face(dev, 6), p, "WEBP")),
        ("dot1.png", "hostile/dot1.png", "verdict", lambda p: save(Image.new("RGB", (1, 1)), p, "PNG")),
        ("traversal.jpg", "uploads/../../../etc/passwd.jpg", None, lambda p: save(face(dev, 7), p, "JPEG")),
        ("unicode.jpg", "фото/😀 лицо ø.jpg", "verdict", lambda p: save(face(dev, 8), p, "JPEG")),
        ("long-key.jpg", "k/" + "a" * 1000 + ".jpg", "verdict", lambda p: save(face(dev, 9), p, "JPEG")),
        (
            "trailing.jpg",
            "hostile/trailing.jpg",
            "verdict",
            lambda p: p.write_bytes(jpeg_bytes + rng.randbytes(999)),
        ),
        ("tiff.tif", "hostile/tiff.tif", "verdict", lambda p: save(face(dev, 10), p, "TIFF")),
    ]
    for name, key, expect, write in writers:
        write(root / name)
        cases.append(Case(name, key, expect))
    return cases


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "hello" * 100)
    return buffer.getvalue()


def flip(data: bytes, rng: random.Random, count: int) -> bytes:
    mutable = bytearray(data)
    for _ in range(count):
        position = rng.randrange(len(mutable) // 10, len(mutable))
        mutable[position] ^= 1 << rng.randrange(8)
    return bytes(mutable)


def animated_gif(dev: Path, path: Path) -> None:
    frames = [face(dev, 11 + i).convert("P") for i in range(3)]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def sixteen_bit(dev: Path, path: Path) -> None:
    gray = np.asarray(face(dev, 2).convert("L"), np.uint16) * 257
    Image.fromarray(gray).save(path, format="PNG")  # uint16 -> mode I;16


def rotated(dev: Path, path: Path) -> None:
    image = face(dev, 4).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    image.save(path, format="JPEG", exif=exif.tobytes())
