"""Self-blended images: pseudo-fakes made from a real face crop alone.

After Shiohara and Yamasaki, "Detecting Deepfakes with Self-Blended Images" (CVPR 2022): a face swap leaves
a blending boundary and a colour or sharpness mismatch between the pasted face and its surroundings. Blending
a real face with a slightly altered copy of itself along a soft face-shaped mask produces those traces with
no identity change, so a detector trained to find them learns the traces and not the identities.

The paper derives its mask from 81 facial landmarks. Crops here are squares centred on the detected face box
(side = box side x crop margin), so the inner face sits at a known place in every crop; the mask is an ellipse
there with random size, aspect, offset and tilt, warped by a smooth random displacement, eroded or dilated,
and feathered with a random blur, then scaled by a random blend ratio, as in the paper's mask augmentation.
The altered copy gets the paper's source-target augmentations: colour (per-channel shift, hue/saturation/
value shift, brightness and contrast), sharpness (down-and-up resampling or unsharp masking), and a small
translation and scale.
"""

from __future__ import annotations

import cv2
import numpy as np

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


def self_blend(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A pseudo-fake (same shape, uint8 RGB) made from one real face crop."""
    image = np.ascontiguousarray(crop, np.uint8)
    altered = alter_geometry(alter_sharpness(alter_colour(image, rng), rng), rng)
    mask = face_mask(image.shape[0], rng)[..., None]
    if rng.random() < 0.5:  # the altered copy is either the pasted face or its surroundings
        source, target = altered, image
    else:
        source, target = image, altered
    blended = mask * source.astype(np.float32) + (1.0 - mask) * target.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def alter_colour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = image.astype(np.float32)
    out += rng.uniform(-20, 20, size=3).astype(np.float32)  # per-channel shift
    hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-0.3, 0.3) * 180 / 10) % 180  # hue is 0..180 in OpenCV
    hsv[..., 1] *= 1.0 + rng.uniform(-0.3, 0.3)
    hsv[..., 2] *= 1.0 + rng.uniform(-0.3, 0.3)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    contrast, brightness = 1.0 + rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1) * 255
    out = (out - out.mean()) * contrast + out.mean() + brightness
    return np.clip(out, 0, 255).astype(np.uint8)


def alter_sharpness(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = image.shape[0]
    if rng.random() < 0.5:
        small = max(8, int(size * rng.uniform(0.3, 0.8)))
        down = cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA)
        return cv2.resize(down, (size, size), interpolation=cv2.INTER_LINEAR)
    blurred = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.8, 2.0))
    amount = rng.uniform(0.3, 1.0)
    return cv2.addWeighted(image, 1.0 + amount, blurred, -amount, 0)


def alter_geometry(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = image.shape[0]
    scale = rng.uniform(0.95, 1.05)
    shift = rng.uniform(-0.03, 0.03, size=2) * size
    matrix = np.array(
        [[scale, 0.0, (1 - scale) * size / 2 + shift[0]], [0.0, scale, (1 - scale) * size / 2 + shift[1]]],
        np.float32,
    )
    return cv2.warpAffine(image, matrix, (size, size), borderMode=cv2.BORDER_REFLECT)


def face_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) float32 in [0, 1]: a soft, irregular inner-face region of a face-centred crop."""
    mask: np.ndarray = np.zeros((size, size), np.float32)
    centre = (
        int(size * (0.5 + rng.uniform(-0.03, 0.03))),
        int(size * (0.53 + rng.uniform(-0.03, 0.05))),
    )
    axes = (int(size * rng.uniform(0.22, 0.33)), int(size * rng.uniform(0.28, 0.40)))
    cv2.ellipse(mask, centre, axes, float(rng.uniform(-12, 12)), 0, 360, 1.0, -1)
    mask = warp_smoothly(mask, rng)
    kernel = np.ones((3, 3), np.uint8)
    steps = int(rng.integers(-3, 4))
    if steps > 0:
        mask = cv2.dilate(mask, kernel, iterations=steps)
    elif steps < 0:
        mask = cv2.erode(mask, kernel, iterations=-steps)
    sigma = rng.uniform(1.0, 0.06 * size)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    peak = float(mask.max())
    if peak > 0:
        mask = mask / peak
    return (mask * rng.choice(BLEND_RATIOS)).astype(np.float32)


def warp_smoothly(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Displace the mask by a smooth random field (a 4x4 grid of offsets, upsampled)."""
    size = mask.shape[0]
    strength = rng.uniform(0.0, 0.05) * size
    field = rng.uniform(-strength, strength, size=(2, 4, 4)).astype(np.float32)
    dx = cv2.resize(field[0], (size, size), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(field[1], (size, size), interpolation=cv2.INTER_CUBIC)
    grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float32)
    return cv2.remap(mask, grid_x + dx, grid_y + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
