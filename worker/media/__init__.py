"""Media: probe uploads, load images and sample video frames, within the input caps. No torch here."""

from worker.media.frames import sample_frames
from worker.media.images import load_image
from worker.media.probe import probe_media
from worker.media.types import Frame, FrameSample, MediaInfo

__all__ = ["Frame", "FrameSample", "MediaInfo", "load_image", "probe_media", "sample_frames"]
