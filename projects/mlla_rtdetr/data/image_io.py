"""Reading images as RGB uint8 whatever their storage (grayscale, palette, RGBA, 16-bit, CMYK,
EXIF-rotated)."""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from PIL import Image, ImageOps

__all__ = ["read_image_pil", "read_image_rgb", "read_image_size", "pil_to_rgb_uint8", "IMAGE_EXTENSIONS"]

# Extensions (lower case) of the image files a folder listing picks up (what PIL decodes).
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp")

# EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)

# PIL modes holding one channel of integers wider than 8 bits (16-bit PNG/TIFF grayscale).
_WIDE_INT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def pil_to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB array of a PIL image, EXIF orientation already applied by the caller.

    16-bit data are scaled (65535 -> 255) instead of clipped; alpha is dropped (the colour
    under it is kept, as detectron2 does); palette / CMYK / LA go through PIL's conversion.
    """
    if img.mode in _WIDE_INT_MODES:
        arr = np.asarray(img).astype(np.float64)
        # "I" also holds plain 8-bit data widened by some decoders; scale only if it needs it.
        scale = 257.0 if img.mode != "I" or arr.max(initial=0) > 255 else 1.0
        gray = np.clip(np.rint(arr / scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        hi = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        gray = np.clip(np.rint(arr / hi * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def read_image_pil(file_name: str) -> Image.Image:
    """Image file -> PIL "RGB" image (8 bits per channel) with EXIF orientation applied.

    Raises FileNotFoundError / OSError naming the file when it is missing or undecodable.
    """
    try:
        with Image.open(file_name) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode == "RGB":
                return img
            return Image.fromarray(pil_to_rgb_uint8(img), "RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file not found: {file_name}") from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL raises these for truncated/corrupt data
        raise OSError(f"Cannot decode image {file_name}: {e}") from e


def read_image_size(file_name: str) -> Tuple[int, int]:
    """(height, width) of an image as :func:`read_image_pil` returns it (EXIF orientation applied),
    from the file header only (no pixel decoding).

    Raises FileNotFoundError / OSError naming the file when it is missing or not an image.
    """
    try:
        with Image.open(file_name) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file not found: {file_name}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise OSError(f"Cannot decode image {file_name}: {e}") from e
    return (w, h) if orientation in _SWAPPING_ORIENTATIONS else (h, w)


def read_image_rgb(file_name: str) -> torch.Tensor:
    """Image file -> (3, H, W) uint8 RGB tensor with EXIF orientation applied."""
    arr = np.asarray(read_image_pil(file_name), dtype=np.uint8)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
