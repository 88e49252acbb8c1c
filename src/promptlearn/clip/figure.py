"""A PNG of the target images with the hard prompt found for them and each image's CLIP similarity.

Built without pyplot, so no backend is chosen or changed.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image

from promptlearn.utils.atomic import atomic_write


def prompt_figure(
    images: Sequence[Image.Image], prompt: str, similarity: float, per_image: Sequence[float], max_images: int = 8
) -> Figure:
    shown = list(images)[:max_images]
    figure = Figure(figsize=(2.2 * len(shown) + 0.4, 3.2), dpi=100)
    axes = figure.subplots(1, len(shown), squeeze=False)[0]
    for ax, image, score in zip(axes, shown, per_image):
        ax.imshow(image)
        ax.set_axis_off()
        ax.set_title(f"cos {score:.3f}", fontsize=9)
    wrapped = "\n".join(textwrap.wrap(repr(prompt), width=max(30, 28 * len(shown))))
    figure.suptitle(f"{wrapped}\nCLIP similarity to the images: {similarity:.3f}", fontsize=10)
    figure.tight_layout()
    return figure


def save_prompt_figure(path: str | Path, *args, **kwargs) -> Path:
    """Render :func:`prompt_figure` to a PNG file, written atomically."""
    buffer = io.BytesIO()
    prompt_figure(*args, **kwargs).savefig(buffer, format="png")
    return atomic_write(path, lambda handle: handle.write(buffer.getvalue()))
