"""What a new user gets wrong, each answered by one `error:` line and exit status 2 before anything is built,
or, where the user may mean it, by a one-line warning. Every case runs the console script's `main` in-process.

The classes of mistake, and where each is caught, are tabled in docs/reliability.md.
"""

from __future__ import annotations

import errno
import json

import pytest

from promptlearn.cli import eval as evaluate
from promptlearn.cli import train

FAST = ["model=tiny_llama", "trainer=debug", "data.max_train_examples=16", "data.max_val_examples=4",
        "data.max_test_examples=4", "baseline=false"]

# (overrides, a fragment of the one error line)
CASES = {
    # settings of the wrong type, named with their key
    "prompt_length_text": (["method.prompt_length=abc"], "method.prompt_length must be an integer, got 'abc'"),
    "prompt_length_fraction": (["method.prompt_length=2.5"], "method.prompt_length must be an integer, got 2.5"),
    "lr_text": (["optimizer.lr=abc"], "optimizer settings refused"),
    "seed_fraction": (["seed=1.5"], "seed must be an integer, got 1.5"),
    "batch_size_fraction": (["data.batch_size=1.5"], "data.batch_size must be an integer, got 1.5"),
    "flag_as_number": (["baseline=1"], "baseline must be true or false, got 1"),
    "test_flag_text": (["test=maybe"], "test must be true or false"),
    "length_normalize_text": (["method.length_normalize=yes"], "method.length_normalize must be true or false"),
    "model_size_text": (["model.hidden_size=abc"], "model.hidden_size must be an integer"),
    "task_seed_text": (["task.split_seed=abc"], "task.split_seed must be an integer"),
    "val_interval_text": (["trainer.val_check_interval=abc"], "trainer.val_check_interval must be a number"),
    "bucketing_number": (["data.bucket_by_length=2"], "data.bucket_by_length must be true or false"),
    "precision_unknown": (["trainer.precision=17"], "trainer.precision must be one of 64, 32, 16"),
    "label_words_one_string": (["task.label_words= yes"], "label_words must be a list, got the string"),
    # impossible values
    "lr_negative": (["optimizer.lr=-0.1"], "optimizer.lr must be positive, got -0.1"),
    "lr_zero": (["method=model_tuning", "optimizer.lr=0"], "optimizer.lr must be positive, got 0"),
    "adafactor_lr_negative": (["optimizer=adafactor", "optimizer.lr=-1"], "optimizer.lr must be positive, got -1"),
    "weight_decay_negative": (["optimizer.weight_decay=-1"], "Invalid weight_decay value: -1"),
    "betas_short": (["optimizer.betas=[0.9]"], "optimizer settings refused"),
    "init_range_negative": (["method.init_range=-1"], "method.init_range must be positive, got -1"),
    "init_vocab_zero": (["method.init_vocab_size=0"], "method.init_vocab_size must be at least 1"),
    "init_text_missing": (["method.init=text"], "method.init=text needs method.init_text"),
    "seed_negative": (["seed=-1"], "seed must be 0 or more, got -1"),
    "val_interval_zero": (["trainer.val_check_interval=0"], "trainer.val_check_interval must be a number of steps"),
    "val_interval_fraction_above_one": (["trainer.val_check_interval=1.5"], "trainer.val_check_interval must be"),
    "max_steps_zero": (["trainer.max_steps=0"], "trainer.max_steps must be 1 or more, got 0"),
    "max_steps_negative": (["trainer.max_steps=-5"], "trainer.max_steps must be 1 or more, got -5"),
    "max_epochs_zero": (["trainer.max_epochs=0"], "trainer.max_epochs must be 1 or more"),
    "log_every_zero": (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps must be 1 or more"),
    "clip_negative": (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val must be 0 or more"),
    "limit_val_negative": (["trainer.limit_val_batches=-1"], "trainer.limit_val_batches must be 0 or more"),
    "devices_zero": (["trainer.devices=0"], "could not build trainer"),
    "gpu_without_gpu": (["trainer.accelerator=gpu"], "could not build trainer"),
    "eval_batch_zero": (["data.eval_batch_size=0"], "data.eval_batch_size must be 1 or more"),
    "field_tokens_zero": (["data.max_field_tokens=0"], "0 would empty every input"),
    "source_length_zero": (["data.max_source_length=0"], "data.max_source_length must be 1 or more"),
    "target_length_zero": (["data.max_target_length=0"], "data.max_target_length must be 1 or more"),
    "val_examples_zero": (["data.max_val_examples=0"], "data.max_val_examples must be 1 or more"),
    "train_examples_negative": (["data.max_train_examples=-1"], "data.max_train_examples must be 0 or more"),
    "workers_negative": (["data.num_workers=-1"], "data.num_workers must be 0 or more"),
    "every_n_steps_zero": (["checkpoint.every_n_train_steps=0"], "checkpoint.every_n_train_steps must be 1 or more"),
    "every_n_minutes_negative": (["checkpoint.every_n_minutes=-1"], "checkpoint.every_n_minutes must be 0 or more"),
    "monitor_unknown": (["checkpoint.monitor=val/acc"], "checkpoint.monitor=val/acc is not a metric this run logs"),
    "mode_unknown": (["checkpoint.mode=maximum"], "checkpoint.mode must be 'min' or 'max'"),
    "nonfinite_unknown": (["on_nonfinite=maybe"], "on_nonfinite must be 'stop' or 'skip'"),
    "requeue_signal_unknown": (["slurm.requeue_signal=USR9"], "slurm.requeue_signal must name a signal"),
    "model_layers_zero": (["model.num_layers=0"], "model.num_layers must be an integer of 1 or more"),
    "model_heads_do_not_divide": (["model.num_heads=5"], "does not split into model.num_heads=5 heads"),
    "prompt_too_long": (["method.prompt_length=100000"], "exceed tiny_llama's 512 positions"),
    "max_new_tokens_zero": (["method.max_new_tokens=0"], "method.max_new_tokens must be at least 1"),
    "pack_width_zero": (["method.pack_width=0"], "pack_width must be a positive number"),
    # each method's own settings
    "prefix_length_zero": (["method=prefix_tuning", "method.prefix_length=0"], "prefix length must be at least 1"),
    "prefix_dropout_above_one": (["method=prefix_tuning", "method.prefix_dropout=1.5"], "method.prefix_dropout must be in [0, 1)"),
    "prefix_mlp_zero": (["method=prefix_tuning", "method.mlp_hidden_size=0"], "method.mlp_hidden_size must be at least 1"),
    "prefix_flash_attention": (["method=prefix_tuning", "+model.attn_implementation=flash_attention_2"], "FlashAttention2"),
    "p_tuning_encoder_unknown": (["method=p_tuning", "method.encoder=gru"], "unknown P-Tuning prompt encoder"),
    "p_tuning_layers_zero": (["method=p_tuning", "method.lstm_layers=0"], "method.lstm_layers must be at least 1"),
    "p_tuning_hidden_zero": (["method=p_tuning", "method.encoder_hidden_size=0"], "method.encoder_hidden_size must be at least 1"),
    "p_tuning_dropout_two": (["method=p_tuning", "method.lstm_dropout=2"], "method.lstm_dropout must be in [0, 1)"),
    "autoprompt_trigger_zero": (["method=autoprompt", "method.trigger_length=0"], "trigger length must be at least 1"),
    "autoprompt_candidates_zero": (["method=autoprompt", "method.num_candidates=0"], "method.num_candidates must be at least 1"),
    "autoprompt_pattern_broken": (["method=autoprompt", "method.token_pattern='['"], "is not a regular expression"),
    "autoprompt_trigger_empty": (["method=autoprompt", "method.initial_trigger=''"], "initial_trigger tokenizes to nothing"),
    "autoprompt_label_tokens_zero": (["method=autoprompt", "method.label_search=true", "method.label_tokens_per_class=0"],
                                     "method.label_tokens_per_class must be at least 1"),
    "pez_vocab_zero": (["method=pez", "method.vocab_size=0"], "method.vocab_size must be at least 1"),
    "pez_lr_negative": (["method=pez", "optimizer.lr=-3"], "optimizer.lr must be positive, got -3"),
    "shots_negative": (["method=prompt_design", "method.num_shots=-1"], "method.num_shots"),
    "shots_too_many": (["method=prompt_design", "method.num_shots=100000"], "100000 demonstrations asked for"),
    "ensemble_without_prompts": (["method=prompt_ensemble"], "method.prompts must be set"),
    "ensemble_missing_prompt": (["method=prompt_ensemble", "method.prompts=[/nope/prompt.pt]"], "/nope/prompt.pt does not exist"),
    "sentinels_on_a_causal_lm": (["data.sentinel_target=true"], "needs a T5-style seq2seq backbone"),
    # tasks
    "label_words_repeated": (["task.label_words=[ yes, yes]"], "label words must be distinct"),
    "template_without_slot": (["task.template='{review}'"], "has no slot for {text}"),
    "eval_mode_unknown": (["task.eval_mode=score"], "eval_mode must be 'rank' or 'generate', got 'score'"),
    "metric_unknown": (["task.metrics=[nope]"], "unknown metric"),
    "test_size_zero": (["task.test_size=0"], "split 'test' is empty"),
    "validation_size_negative": (["task.validation_size=-3"], "split 'validation' is empty"),
    "csv_missing": (["task.csv_path=/nope.csv"], "/nope.csv does not exist"),
    "bigbench_without_a_task": (["task=bigbench"], "needs task.task_name"),
    "local_without_a_file": (["task=local"], "set task.train to a .jsonl or .csv file"),
    "local_file_missing": (["task=local", "task.train=/nope/train.jsonl"], "/nope/train.jsonl does not exist"),
    "local_file_suffix": (["task=local", "task.train=/nope/train.txt"], "must end in .jsonl or .csv"),
    "no_training_split": (["data.max_train_examples=0"], "has no 'train' split"),
    # names and keys
    "misspelt_key": (["method.prompt_lenght=5"], "Could not override 'method.prompt_lenght'"),
    "unknown_callback_key": (["callbacks.x=1"], "Could not override 'callbacks.x'"),
    "added_key_nothing_reads": (["+foo=1"], "+foo=1 adds a setting nothing reads"),
    "unknown_logger": (["logger=nope"], "unknown logger 'nope'"),
    "unknown_trainer": (["trainer=nope"], "unknown trainer 'nope'"),
    "unknown_optimizer": (["optimizer=nope"], "unknown optimizer 'nope'"),
    "unknown_experiment": (["experiment=nope"], "unknown experiment 'nope'"),
    "unknown_search": (["hparams_search=nope"], "unknown hparams_search 'nope'"),
    "unknown_bigbench_preset": (["task=bigbench_vitaminc"], "unknown task 'bigbench_vitaminc'"),
    "callback_that_does_not_import": (["+callbacks.es._target_=nope.Nope"], "could not build callbacks.es"),
    "hub_model_offline": (["model=gpt2"], "could not load 'openai-community/gpt2'"),
    "hub_task_offline": (["task=boolq"], "without hub access"),
    # checkpoints and folders
    "checkpoint_missing": (["ckpt_path=/nope.ckpt"], "/nope.ckpt does not exist"),
    "resume_last_without_a_folder": (["ckpt_path=last"], "does not exist"),
    "unwritable_output_dir": (["output_dir=/proc/x"], "cannot write to the output directory /proc/x"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_mistake_is_one_line(run_main, tmp_path, case):
    overrides, fragment = CASES[case]
    done = run_main(train.main, *FAST, *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2, (done.stdout[-1500:], done.stderr[-1500:])
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], done.stderr[-2000:]


def test_there_are_over_a_hundred_classes_of_mistake_here_and_in_test_bad_inputs():
    from test_bad_inputs import CASES as EARLIER

    assert len(CASES) + len(EARLIER) > 100


def test_a_latin1_data_file_is_named_with_its_fix(run_main, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_bytes(b'{"text": "caf\xe9", "label": 1}\n{"text": "bad", "label": 0}\n')
    done = run_main(train.main, *FAST, "task=local", f"task.train={data}", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2 and "is not UTF-8 (byte 0xe9" in done.stderr and "iconv" in done.stderr


def test_eval_reads_the_method_from_the_prompt_file(run_main, tmp_path):
    trained = run_main(train.main, *FAST, "method=prefix_tuning", "method.prefix_length=2", f"hydra.run.dir={tmp_path / 'a'}")
    assert trained.returncode == 0, trained.stderr[-2000:]
    prompt = tmp_path / "a" / "prompt.pt"
    done = run_main(evaluate.main, "model=tiny_llama", "trainer=debug", "data.max_val_examples=4",
                    "data.max_test_examples=4", f"prompt={prompt}", f"hydra.run.dir={tmp_path / 'b'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "b" / "results.json").read_text())["method"] == "prefix_tuning"


def test_an_explicit_trainer_preset_keeps_its_values_over_an_experiment(run_main, tmp_path):
    done = run_main(train.main, "experiment=lester", "trainer=debug", "model=tiny_t5", *FAST[2:],
                    f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "note: trainer=debug keeps its own max_steps, val_check_interval over experiment=lester's" in done.stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text())["train_steps"] == 2  # not lester's 30,000


def test_extra_configs_through_hydras_config_dir(run_main, tmp_path):
    (tmp_path / "mine" / "method").mkdir(parents=True)
    (tmp_path / "mine" / "method" / "tiny_prompt.yaml").write_text("defaults:\n  - prompt_tuning\n  - _self_\nprompt_length: 3\n")
    done = run_main(train.main, "--config-dir", str(tmp_path / "mine"), "method=tiny_prompt", *FAST,
                    f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["trainable_params"] == 3 * 32


def test_test_rows_inside_train_are_warned_of(run_main, tmp_path):
    rows = [{"text": f"text {i}", "label": i % 2} for i in range(8)]
    for name, part in (("train", rows), ("validation", rows[:2]), ("test", rows[:3])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    done = run_main(train.main, *FAST, "task=local", *(f"task.{n}={tmp_path / n}.jsonl" for n in ("train", "validation", "test")),
                    f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3 of 3 test examples also appear in train with the same input" in done.stdout + done.stderr


def test_a_full_disk_is_one_line(run_main, tmp_path, monkeypatch):
    from promptlearn.training import checkpoints

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "checkpoints" / "last.ckpt"))

    monkeypatch.setattr(checkpoints, "atomic_torch_save", full)
    done = run_main(train.main, *FAST, f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = [l for l in done.stderr.splitlines() if l.startswith("error:")]
    assert "No space left on device writing" in line and "free some space" in line


def test_an_unwritable_working_directory_is_one_line_for_the_default_run_folder(run_main, tmp_path, monkeypatch):
    from promptlearn.cli import hydra_callbacks

    def refuse(dir=None, **kwargs):  # what a read-only folder does (root writes anywhere, so it is simulated)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hydra_callbacks.tempfile, "TemporaryFile", refuse)
    done = run_main(train.main, *FAST)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"cannot write to the output directory {tmp_path}/outputs/rotten_tomatoes/tiny_llama/prompt_tuning/" in done.stderr
    assert not (tmp_path / "outputs").exists()


def test_wandb_with_a_key_but_no_network_falls_back_to_offline_within_seconds(run_main, tmp_path, monkeypatch):
    import time

    from promptlearn.cli import resolvers

    resolvers.wandb_reachable.cache_clear()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for variable in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb-home"))
    started = time.time()
    done = run_main(train.main, *FAST, "logger=wandb", f"hydra.run.dir={tmp_path / 'run'}")
    resolvers.wandb_reachable.cache_clear()
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.time() - started < 90
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
