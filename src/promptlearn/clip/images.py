"""Target images for prompt inversion: a folder or a list of paths, read with Pillow, embedded once by CLIP.

The vision tower is frozen, so each image is embedded once in ``setup``; training then draws
batches of those embeddings (all of them, or a random ``batch_size`` of them per step, as in
Wen et al.'s batch sampling) from an endless stream, counted in steps by the trainer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, IterableDataset

from promptlearn.clip.backbone import ClipBackbone
from promptlearn.utils.errors import ConfigError, DataError

IMAGE_SUFFIXES = frozenset(Image.registered_extensions())


def image_paths(source: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """A folder's image files (by suffix, sorted), or the given list of files as they are."""
    if source is None or (not isinstance(source, (str, Path)) and len(source) == 0):
        raise DataError("no target images given; set targets.images=path/to/folder or targets.images=[a.png,b.jpg]")
    if isinstance(source, (str, Path)):
        folder = Path(source).expanduser()
        if not folder.exists():
            raise DataError(f"image folder {folder} does not exist; set targets.images to a folder of images")
        if folder.is_dir():
            paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not paths:
                raise DataError(f"image folder {folder} holds no image files (.png, .jpg, ...); add images or point targets.images elsewhere")
            return paths
        return [folder]
    paths = [Path(p).expanduser() for p in source]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"image files not found: {', '.join(missing)}; fix the paths in targets.images")
    return paths


def load_images(paths: Sequence[Path]) -> list[Image.Image]:
    """Each file decoded to RGB; an unreadable file fails naming it."""
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"cannot read image {path} ({type(err).__name__}: {err}); remove or replace the file") from None
    return images


class EmbeddingBatches(IterableDataset):
    """Endless batches: the embeddings to fit this step, and all target embeddings (for scoring prompts)."""

    def __init__(self, embeddings: torch.Tensor, batch_size: int | None, seed: int) -> None:
        self.embeddings = embeddings
        self.batch_size = batch_size
        self.seed = seed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed)
        count = len(self.embeddings)
        while True:
            if self.batch_size is None or self.batch_size >= count:
                batch = self.embeddings
            else:
                batch = self.embeddings[torch.randperm(count, generator=generator)[: self.batch_size]]
            yield {"image_embeds": batch, "all_image_embeds": self.embeddings}


class ImageDataModule(L.LightningDataModule):
    """Loads the target images, embeds them with the frozen CLIP vision tower, and serves embedding batches."""

    def __init__(
        self,
        clip: ClipBackbone,
        images: str | Sequence[str] | None,
        batch_size: int | None = None,
        seed: int = 0,
        encode_batch_size: int = 16,
    ) -> None:
        super().__init__()
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"targets.batch_size must be at least 1 or null (all images every step), got {batch_size}")
        self.clip = clip
        self.source = images
        self.batch_size = batch_size
        self.seed = seed
        self.encode_batch_size = encode_batch_size
        self.paths: list[Path] = []
        self.images: list[Image.Image] = []
        self.embeddings: torch.Tensor | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.embeddings is not None:
            return
        self.paths = image_paths(self.source)
        self.images = load_images(self.paths)
        chunks = []
        for start in range(0, len(self.images), self.encode_batch_size):
            pixels = self.clip.processor(images=self.images[start : start + self.encode_batch_size], return_tensors="pt")
            chunks.append(self.clip.image_embeddings(pixels["pixel_values"].to(self.clip.model.dtype)))
        self.embeddings = torch.cat(chunks)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(EmbeddingBatches(self.embeddings, self.batch_size, self.seed), batch_size=None)
