"""Image / folder / video inputs and outputs of tools/predict.py (videos through PyAV)."""
from __future__ import annotations

import os
from typing import Iterator, List, Optional, Tuple

import numpy as np

from mlla_rtdetr.data.image_io import IMAGE_EXTENSIONS

from ..errors import PathNotFoundError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def is_video(path: str) -> bool:
    return path.lower().endswith(VIDEO_EXTENSIONS)


def collect_images(inputs: List[str]) -> List[str]:
    """Image files named directly or found (not recursively, sorted) in the given folders."""
    files: List[str] = []
    for path in inputs:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise PathNotFoundError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in folder '{path}'.")
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise PathNotFoundError(f"Input '{path}' is neither a file nor a folder.")
    return files


def read_video_frames(path: str, max_frames: Optional[int] = None) -> Iterator[np.ndarray]:
    """Yield the frames of a video as (H, W, 3) uint8 RGB arrays."""
    import av

    if not os.path.isfile(path):
        raise PathNotFoundError(f"Video '{path}' does not exist.")
    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError(f"'{path}' has no video stream.")
        for i, frame in enumerate(container.decode(video=0)):
            if max_frames is not None and i >= max_frames:
                break
            yield frame.to_ndarray(format="rgb24")


def video_fps(path: str) -> float:
    import av

    with av.open(path) as container:
        rate = container.streams.video[0].average_rate
    return float(rate) if rate else 25.0


class VideoWriter:
    """Writes (H, W, 3) uint8 RGB frames to an H.264 (else MPEG-4 part 2) video file. Frame sizes
    are cropped to even numbers (yuv420p needs them)."""

    def __init__(self, path: str, fps: float):
        import av

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._av = av
        self.path = path
        self.fps = fps
        self.container = av.open(path, mode="w")
        self.stream = None
        self.frames = 0

    def _open_stream(self, h: int, w: int) -> None:
        from fractions import Fraction

        codec = "libx264" if "libx264" in self._av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1000))
        self.stream.width, self.stream.height = w, h
        self.stream.pix_fmt = "yuv420p"

    def write(self, frame: np.ndarray) -> None:
        h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
        if self.stream is None:
            self._open_stream(h, w)
        frame = np.ascontiguousarray(frame[: self.stream.height, : self.stream.width])
        vf = self._av.VideoFrame.from_ndarray(frame, format="rgb24")
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> Tuple[str, int]:
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
        return self.path, self.frames

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
