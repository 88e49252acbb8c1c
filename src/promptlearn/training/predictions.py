"""Every evaluated example as a record, written beside the run: ``predictions/val.jsonl`` (the last
validation, which after training is the best checkpoint's) and ``predictions/test.jsonl``.

A record holds the prompted input as text, the target, the prediction, the score of each choice
(rank classification) and whether the prediction was right. The records come from what the
method's evaluation step decided (its :class:`~promptlearn.methods.scoring.Prediction`), so they
agree with the metrics by construction; nothing is scored twice.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L

from promptlearn.data.encoding import IGNORE_INDEX
from promptlearn.metrics import normalize_answer
from promptlearn.utils.atomic import atomic_write

STAGE_FILES = {"val": "val.jsonl", "test": "test.jsonl"}


def source_texts(module: L.LightningModule, batch: Mapping[str, Any]) -> list[str]:
    """The prompted text of each example (for causal LMs, ``input_ids`` also hold the target: drop it)."""
    ids, mask = batch["input_ids"], batch["attention_mask"].bool()
    if not module.backbone.is_encoder_decoder:
        mask = mask & (batch["labels"] == IGNORE_INDEX)
    tokenizer = module.backbone.tokenizer
    return [tokenizer.decode(row[keep], skip_special_tokens=True) for row, keep in zip(ids, mask)]


def records(module: L.LightningModule, batch: Mapping[str, Any], prediction: Any) -> list[dict[str, Any]]:
    """One record per example of an evaluation batch, from the step's prediction."""
    rows = []
    scores = prediction.scores.tolist() if prediction.scores is not None else [None] * len(batch["label"])
    for i, (text, answers) in enumerate(zip(source_texts(module, batch), batch["answers"])):
        label, index = int(batch["label"][i]), int(prediction.index[i])
        correct = index == label if label >= 0 else any(
            normalize_answer(prediction.texts[i]) == normalize_answer(a) for a in answers)
        choice_scores = None if scores[i] is None else [s for s in scores[i] if s != float("-inf")]
        rows.append({"input": text, "target": answers[0] if answers else "", "prediction": prediction.texts[i],
                     "scores": choice_scores, "correct": bool(correct), "task": batch["task"][i] or None})
    return rows


class PredictionsWriter(L.Callback):
    """Writes the records of every validation and test pass into ``<folder>/predictions/``."""

    def __init__(self, folder: str | Path, prefix: str = "") -> None:
        self.folder = Path(folder) / "predictions"
        self.prefix = prefix
        self.rows: dict[str, list[dict[str, Any]]] = {"val": [], "test": []}

    def _collect(self, stage: str, module: L.LightningModule, outputs: Any, batch: Any) -> None:
        if isinstance(outputs, Mapping) and "prediction" in outputs:
            self.rows[stage] += records(module, batch, outputs["prediction"])

    def _write(self, trainer: L.Trainer, stage: str) -> None:
        rows, self.rows[stage] = self.rows[stage], []
        if not rows or trainer.sanity_checking:
            return
        rank = f".rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        name = f"{self.prefix}{STAGE_FILES[stage]}".replace(".jsonl", f"{rank}.jsonl")
        text = io.StringIO()
        for row in rows:
            text.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.folder / name, lambda handle: handle.write(text.getvalue().encode()))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect("val", pl_module, outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect("test", pl_module, outputs, batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, "test")
