"""Labelled image grids (PNG), written atomically."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from erasekit.files import atomic_write_bytes


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def labelled_grid(
    images: Sequence[Image.Image] | np.ndarray,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    cols: int | None = None,
    cell: int = 128,
) -> Image.Image:
    """Tile ``images`` (upscaled to ``cell`` px, nearest) with a caption line under each."""
    if isinstance(images, np.ndarray):
        arr = images if images.dtype == np.uint8 else np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)
        images = [Image.fromarray(a) for a in arr]
    n = len(images)
    cols = cols or min(n, 8)
    rows = math.ceil(n / cols)
    label_h = 44 if labels else 0
    title_h = 26 if title else 0
    pad = 4
    width = cols * (cell + pad) + pad
    height = title_h + rows * (cell + label_h + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    small, big = _font(11), _font(14)
    if title:
        draw.text((pad, 5), title, fill=(0, 0, 0), font=big)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        x = pad + c * (cell + pad)
        y = title_h + pad + r * (cell + label_h + pad)
        canvas.paste(im.convert("RGB").resize((cell, cell), Image.NEAREST), (x, y))
        if labels:
            for j, line in enumerate(_wrap(labels[i], 20)[:3]):
                draw.text((x + 1, y + cell + 2 + 13 * j), line, fill=(0, 0, 0), font=small)
    return canvas


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Save ``image`` as PNG at ``path`` via a temp file and rename."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
