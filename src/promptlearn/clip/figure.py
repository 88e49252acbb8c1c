"""A PNG (and PDF) of the target images with the hard prompt found for them.

Every number on it measures the prompt as plain text, encoded again as a user pasting it would:
each image's title is the cosine of that text embedding with the image, and the headline gives
their mean and the cosine with the images' mean direction (what the search optimises), beside the
score of the projected token ids the search saw, so that a prompt which does not round-trip shows.

Built without pyplot, so no backend is chosen or changed.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from PIL import Image

from promptlearn.analysis import style


def prompt_figure(
    images: Sequence[Image.Image], prompt: str, text_similarity: float, per_image: Sequence[float],
    ids_similarity: float | None = None, max_images: int = 8,
) -> Figure:
    shown = list(images)[:max_images]
    with matplotlib.rc_context(style.RC):
        figure = Figure(figsize=(2.2 * len(shown) + 0.4, 3.4), dpi=100)
        axes = figure.subplots(1, len(shown), squeeze=False)[0]
    for ax, image, score in zip(axes, shown, per_image):
        ax.imshow(image)
        ax.set_axis_off()
        ax.set_title(f"cosine {score:.3f}", fontsize=9)
    wrapped = "\n".join(textwrap.wrap(repr(prompt), width=max(30, 28 * len(shown))))
    scores = (f"as plain text: cosine with the images' mean direction {text_similarity:.3f}, "
              f"mean per image {sum(per_image) / max(len(per_image), 1):.3f}")
    if ids_similarity is not None:
        scores += f"; as the projected token ids: {ids_similarity:.3f}"
    figure.suptitle(f"{wrapped}\n{scores}", fontsize=9)
    figure.tight_layout()
    return figure


def save_prompt_figure(path: str | Path, *args, **kwargs) -> Path:
    """Render :func:`prompt_figure` to PNG (and PDF beside it), each written atomically; returns the PNG."""
    return style.save(prompt_figure(*args, **kwargs), path)[0]
