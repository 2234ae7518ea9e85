"""Image loading with Pillow: a whitelist of formats, EXIF orientation, any mode to RGB uint8.

Pillow's decompression-bomb guard is aligned with `MediaLimits.max_pixels` (`Image.MAX_IMAGE_PIXELS`),
so an image that declares more pixels than twice the cap fails while its header is read, and one over
the cap fails in `check_pixels` right after; neither is ever decoded. Truncated files are never
padded (`ImageFile.LOAD_TRUNCATED_IMAGES` is kept False).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from worker.errors import ErrorCode, MediaError
from worker.media.types import Frame, MediaInfo
from worker.settings import MediaLimits

logger = logging.getLogger(__name__)

# Pillow format ids this service decodes; anything else Pillow knows (TGA, PSD, MPEG, ...) is not tried.
WANTED_PIL_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
PIL_SHORT_NAMES = {
    "JPEG": "jpeg",
    "MPO": "jpeg",  # a JPEG with a multi-picture (stereo / preview) extension
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tiff",
    "AVIF": "avif",
}

_TRANSPOSE_BY_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def describe_pixels(width: int, height: int) -> str:
    return f"{width}x{height} ({width * height / 1e6:.1f} MP)"


def check_pixels(width: int, height: int, limits: MediaLimits, what: str) -> None:
    """Refuse a frame size over the cap, or a nonsensical one, before anything is decoded."""
    if width <= 0 or height <= 0:
        raise MediaError(ErrorCode.CORRUPT, f"{what} declares an empty frame size ({width}x{height})")
    if width * height > limits.max_pixels:
        raise MediaError(
            ErrorCode.TOO_MANY_PIXELS,
            f"{what} is {describe_pixels(width, height)}; the limit is {limits.max_pixels / 1e6:.1f} MP",
        )


def pil_formats() -> tuple[str, ...]:
    """The wanted Pillow formats that this Pillow build can open."""
    Image.init()
    return tuple(name for name in WANTED_PIL_FORMATS if name in Image.OPEN)


def decodable_image_kinds() -> frozenset[str]:
    """Short names of the image formats this Pillow build decodes (AVIF needs a build with libavif)."""
    return frozenset(PIL_SHORT_NAMES[name] for name in pil_formats())


def name_pil_format(image: Image.Image) -> str:
    name = image.format or "unknown"
    return PIL_SHORT_NAMES.get(name, name.lower())


@contextmanager
def open_image(path: Path, max_pixels: int) -> Iterator[ImageFile.ImageFile]:
    """Open lazily (headers only). Raises UnidentifiedImageError for anything not in the whitelist."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path, formats=pil_formats())
        except Image.DecompressionBombError:
            raise MediaError(
                ErrorCode.TOO_MANY_PIXELS,
                f"image is over {2 * max_pixels / 1e6:.1f} MP; the limit is {max_pixels / 1e6:.1f} MP",
            ) from None
        with image:
            yield image


def read_orientation(image: Image.Image) -> int:
    """EXIF orientation (1-8) without decoding pixels; 1 when absent or unreadable."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1  # Pillow's PNG getexif() would decode the whole image to look for a late eXIf chunk
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception as exc:  # malformed EXIF must not make a good image unreadable
        logger.debug("unreadable EXIF ignored: %s", exc)
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE_BY_ORIENTATION else 1


def orient_image(image: Image.Image) -> Image.Image:
    method = _TRANSPOSE_BY_ORIENTATION.get(read_orientation(image))
    return image if method is None else image.transpose(method)


def flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite onto white, as a viewer shows it; transparent pixels' hidden colours are dropped."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def scale_to_uint8(image: Image.Image) -> np.ndarray:
    """Gray 16-bit / 32-bit int / float images -> (H, W) uint8, scaling rather than clipping."""
    data = np.asarray(image).astype(np.float64)
    if image.mode in _SIXTEEN_BIT_MODES or (image.mode == "I" and data.size and data.max() > 255):
        data = data / 257.0
    elif image.mode == "F" and data.size and data.max() <= 1.0:
        data = data * 255.0
    return np.clip(np.rint(data), 0, 255).astype(np.uint8)


def convert_to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB, C-contiguous and writable."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        gray = scale_to_uint8(image)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgb = flatten_alpha(image)
    elif mode == "RGB":
        rgb = image
    else:  # 1, L, P, CMYK, YCbCr, LAB, HSV, RGBX
        rgb = image.convert("RGB")
    array = np.array(rgb, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise MediaError(ErrorCode.UNSUPPORTED, f"image mode {mode} cannot be converted to RGB")
    return np.ascontiguousarray(array)


def refuse_truncated_images() -> None:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        logger.warning("PIL LOAD_TRUNCATED_IMAGES was set; resetting it so truncated uploads fail as corrupt")
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def load_image(path: Path, info: MediaInfo, limits: MediaLimits) -> Frame:
    """Decode the first frame of an image to RGB uint8, EXIF orientation applied."""
    refuse_truncated_images()
    try:
        with open_image(path, limits.max_pixels) as image:
            check_pixels(image.width, image.height, limits, "image")
            image.load()
            array = convert_to_rgb(orient_image(image))
    except MediaError:
        raise
    except UnidentifiedImageError:
        raise MediaError(ErrorCode.CORRUPT, f"{info.format} file is not a readable image") from None
    except Image.DecompressionBombError:  # a later GIF frame larger than the first
        raise MediaError(ErrorCode.TOO_MANY_PIXELS, "an image frame is over the pixel limit") from None
    except MemoryError:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ... on bad data
        logger.info("image %s cannot be decoded: %s: %s", path.name, type(exc).__name__, exc)
        reason = str(exc)[:160] or type(exc).__name__
        raise MediaError(ErrorCode.CORRUPT, f"{info.format} image cannot be decoded: {reason}") from None
    return Frame(index=0, timestamp_s=0.0, image=array)
