"""W&B tracking, offline: grouping, tags, flat config, summary metrics, predictions table, prompt artifact."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import lightning as L
import pytest
from hydra.utils import instantiate
from wandb.proto import wandb_internal_pb2

from promptlearn.backbones import build_tiny_t5
from promptlearn.data.datamodule import TaskDataModule
from promptlearn.methods.prompt_tuning import PromptTuning
from promptlearn.prompts.interpret import write_neighbours
from promptlearn.cli.run_config import flat_config, flatten
from promptlearn.training.tracking import WandbTracking

from conftest import ToySentiment, adamw

BLOCK = 32 * 1024  # W&B's run file is a LevelDB-style log of protobuf records in 32 KiB blocks


def wandb_records(run_file: Path) -> list[wandb_internal_pb2.Record]:
    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 2):  # full, first
            pending = chunk
        else:  # middle, last
            pending += chunk
        if kind in (1, 4) and pending:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def finished_records(run_dir: Path, timeout: float = 30.0) -> list[wandb_internal_pb2.Record]:
    """The run's records once its writer has flushed the final ``exit`` record (it writes asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        records = wandb_records(next(run_dir.glob("*.wandb")))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def by_type(records, kind: str) -> list:
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


@pytest.fixture
def offline_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")  # restored after the test (WandbLogger sets it process-wide)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for variable in ("HOME", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "home"))


def tracked_run(cfg, tmp_path: Path, steps: int = 4) -> tuple[WandbTracking, dict, Path]:
    backbone, task = build_tiny_t5(), ToySentiment()
    module = PromptTuning(backbone, task.info(), adamw(), prompt_length=4, init="class_label")
    tracking = WandbTracking(flat_config(cfg))
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, val_check_interval=2, logger=instantiate(cfg.logger),
                        callbacks=[tracking], enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, log_every_n_steps=1)
    datamodule = TaskDataModule(task, backbone, batch_size=8, eval_batch_size=8)
    trainer.fit(module, datamodule=datamodule)
    metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    results = {"task": task.name, "model": backbone.name, "method": module.method_name, "seed": 0, "metrics": metrics,
               "total_params": sum(p.numel() for p in module.parameters()), "trainable_params": module.prompt.numel()}
    prompt = module.save_prompt(tmp_path / "prompt.pt")
    tracking.finish(results, prompt, extra_files=(write_neighbours(module, tmp_path),))
    return tracking, results, prompt


def test_a_tracked_run_is_chartable_carries_its_prompt_and_closes(compose_train, offline_wandb, tmp_path):
    cfg = compose_train("model=tiny_t5", "logger=wandb", "experiment=ablation_init")
    tracking, results, prompt = tracked_run(cfg, tmp_path)
    assert tracking.logger is None  # the run was closed
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    records = finished_records(run_dir)

    (run,) = by_type(records, "run")
    assert run.run_group == "ablation_init"
    assert set(run.tags) == {"model:tiny_t5", "method:prompt_tuning", "task:rotten_tomatoes"}

    config = {item.key: json.loads(item.value_json) for c in by_type(records, "config") for item in c.update}
    assert config["model/name"] == "tiny_t5" and config["method/name"] == "prompt_tuning"
    assert config["method/prompt_length"] == cfg.method.prompt_length and config["optimizer/lr"] == cfg.optimizer.lr
    assert config["experiment_name"] == "ablation_init"
    assert not any(isinstance(v, dict) for k, v in config.items() if k != "_wandb")  # flat
    assert set(flatten({"a": {"b": 1, "c": {"d": 2}}, "e": [1]})) == {"a/b", "a/c/d", "e"}

    metrics = {m.name or m.glob_name: m for m in by_type(records, "metric")}
    assert metrics["val/*"].step_metric == "trainer/global_step"
    assert metrics["val/*"].summary.max and metrics["val/*"].summary.last
    assert metrics["train/loss"].summary.min and metrics["test/*"].summary.last
    assert metrics["val/loss"].summary.min and not metrics["val/loss"].summary.max  # a loss keeps its lowest
    assert metrics["val/score"].summary.max  # the monitor keeps its best (checkpoint.mode)
    assert "params/backbone" in metrics

    summary = {}
    for update in by_type(records, "summary"):
        summary.update({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in update.update})
    assert summary["params/backbone"] == results["total_params"] - results["trainable_params"]
    assert summary["final/test/score"] == pytest.approx(results["metrics"]["test/score"])
    assert summary["best/test/score"] == pytest.approx(results["metrics"]["test/score"])

    artifacts = {a.type: a for a in by_type(records, "artifact")}
    files = {c.path: c.size for c in artifacts["prompt"].manifest.contents}
    assert files == {"prompt.pt": prompt.stat().st_size, "prompt_neighbours.json": (tmp_path / "prompt_neighbours.json").stat().st_size}
    assert json.loads(artifacts["prompt"].metadata)["metrics"]["test/score"] == pytest.approx(results["metrics"]["test/score"])
    assert [c.path for c in artifacts["run_table"].manifest.contents] == ["test/predictions.table.json"]

    (table_file,) = (run_dir / "files" / "media" / "table" / "test").glob("predictions_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["input", "target", "prediction", "correct"]
    rows = table["data"]
    assert len(rows) == 16 and all(row[2] in (" no", " yes") for row in rows)
    assert all(row[3] == (row[1] == row[2]) for row in rows)
    # every test example is in the table, so its share of correct rows is the logged test accuracy
    assert sum(row[3] for row in rows) / len(rows) == pytest.approx(results["metrics"]["test/accuracy"])

    # the next job of a multirun, in the same process, gets a run of its own
    tracked_run(cfg, tmp_path / "next", steps=1)
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 2


def test_tracking_does_nothing_without_a_wandb_logger(tmp_path):
    backbone, task = build_tiny_t5(), ToySentiment()
    module = PromptTuning(backbone, task.info(), adamw(), prompt_length=2, init="random_uniform")
    tracking = WandbTracking({"seed": 0})
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, callbacks=[tracking], enable_progress_bar=False,
                        enable_checkpointing=False, limit_val_batches=0)
    trainer.fit(module, datamodule=TaskDataModule(task, backbone))
    tracking.finish({"metrics": {}}, module.save_prompt(tmp_path / "prompt.pt"))
    assert tracking.logger is None and not (tmp_path / "wandb").exists()
