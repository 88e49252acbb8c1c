"""MetaPrompting's MAML: meta-gradients against an independent computation, and meta-learning that helps."""

from __future__ import annotations

import functools
import json
import logging
import os
import statistics
import subprocess
import sys

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from promptlearn.backbones import build_tiny_llama, build_tiny_t5
from promptlearn.data.episode_data import EpisodeDataModule
from promptlearn.data.episodes import TaskSource
from promptlearn.utils.errors import ConfigError
from promptlearn.data.tasks import TaskInfo
from promptlearn.meta.maml import META_INIT, MetaPromptTuning, msl_weights
from promptlearn.meta.task_batching import stack_task_batches
from promptlearn.meta.batch_memory import extrapolate_peak
from promptlearn.meta.toy import keyword_family
from promptlearn.utils.memory import cpu_peak_bytes

BUILDERS = {"tiny_t5": build_tiny_t5, "tiny_llama": build_tiny_llama}
EPISODE_INFO = TaskInfo(name="episodes", metrics=("accuracy",), eval_mode="rank")


def episode_data(backbone, **kwargs) -> EpisodeDataModule:
    tasks = keyword_family(range(6), size=12)
    pools = {
        "meta_train": [TaskSource(t) for t in tasks[:4]],
        "meta_test": [TaskSource(t) for t in tasks[4:]],
    }
    settings = dict(n_way=2, k_shot=3, query_shots=3, tasks_per_step=2, test_episodes=8) | kwargs
    return EpisodeDataModule(pools, backbone, **settings)


def first_episode(datamodule: EpisodeDataModule):
    sampler = datamodule.samplers["meta_train"]
    raw = sampler.episode(0)
    return raw, datamodule.collate(raw)


# ----------------------------------------------------------------- an independent reference
def reference_logits(backbone, prompt, task, examples, encoder) -> torch.Tensor:
    """Each (example, choice) alone, unpadded, through the unmodified model; prompt concatenated by hand."""
    model, embed = backbone.model, backbone.model.get_input_embeddings()
    rows = []
    for example in examples:
        encoded = encoder.encode(task, example)
        source = torch.tensor([encoded.source_ids])
        scores = []
        for choice in encoded.choice_ids:
            target = torch.tensor([choice])
            if backbone.is_encoder_decoder:
                inputs = torch.cat([prompt[None], embed(source)], dim=1)
                start = torch.tensor([[model.config.decoder_start_token_id]])
                logits = model(
                    inputs_embeds=inputs, decoder_input_ids=torch.cat([start, target[:, :-1]], 1)
                ).logits[0]
            else:
                inputs = torch.cat([prompt[None], embed(source), embed(target)], dim=1)
                first = prompt.shape[0] + source.shape[1] - 1
                logits = model(inputs_embeds=inputs).logits[0, first : first + target.shape[1]]
            scores.append(logits.log_softmax(-1)[torch.arange(target.shape[1]), target[0]].sum())
        rows.append(torch.stack(scores))
    return torch.stack(rows)


def reference_meta_gradients(backbone, raw, encoder, prompt, lr, steps, weights):
    """Meta-gradients of sum_t w_t L_q(theta_t), theta_{t+1} = theta_t - lr * g_s(theta_t), by the chain rule.

    Backward from the last step: v <- v + w_t g_q(theta_t), then v <- v - H_s(theta_{t-1}) (lr * v), with
    Hessian-vector products by double backward in plain autograd. Returns (d/d theta_0, d/d lr).
    """
    support_labels = torch.tensor([e.label for e in raw.support])
    query_labels = torch.tensor([e.label for e in raw.query])

    def support_loss(theta):
        return F.cross_entropy(
            reference_logits(backbone, theta, raw.task, raw.support, encoder), support_labels
        )

    def query_loss(theta):
        return F.cross_entropy(reference_logits(backbone, theta, raw.task, raw.query, encoder), query_labels)

    def gradient(loss_fn, theta, create_graph=False):
        theta = theta.detach().requires_grad_()
        (g,) = torch.autograd.grad(loss_fn(theta), theta, create_graph=create_graph)
        return theta, g

    thetas, support_grads = [prompt.detach()], []
    for _ in range(steps):
        support_grads.append(gradient(support_loss, thetas[-1])[1])
        thetas.append(thetas[-1] - lr * support_grads[-1])
    v = torch.zeros_like(prompt)
    lr_grad = torch.zeros_like(prompt)
    for t in range(steps, 0, -1):
        if weights[t - 1] > 0:
            v = v + weights[t - 1] * gradient(query_loss, thetas[t])[1]
        lr_grad = lr_grad - support_grads[t - 1] * v
        theta, g = gradient(support_loss, thetas[t - 1], create_graph=True)
        (hvp,) = torch.autograd.grad(g, theta, grad_outputs=lr * v)
        v = v - hvp
    return v, lr_grad, thetas


def meta_module(backbone, **kwargs) -> MetaPromptTuning:
    torch.manual_seed(0)
    settings = dict(prompt_length=3, init="random_uniform", inner_steps=2, inner_lr=0.01) | kwargs
    return MetaPromptTuning(backbone, **settings)


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
@pytest.mark.parametrize("variant", ["maml", "meta_sgd_msl"])
def test_second_order_meta_gradient_matches_hessian_vector_products(model, variant):
    backbone = BUILDERS[model]()
    meta_sgd = variant == "meta_sgd_msl"
    module = meta_module(
        backbone, learn_inner_lr=meta_sgd, per_step_loss_weights=meta_sgd, msl_anneal_steps=4
    )
    if meta_sgd:  # distinct per-entry step sizes, so a wrong broadcast would show
        with torch.no_grad():
            module.inner_lr.uniform_(0.005, 0.02)
    datamodule = episode_data(backbone)
    raw, episode = first_episode(datamodule)
    weights = msl_weights(2, 1, 4) if meta_sgd else torch.tensor([0.0, 1.0])

    loss, _ = module.meta_loss(episode, weights)
    params = [module.prompt] + ([module.inner_lr] if meta_sgd else [])
    got = torch.autograd.grad(loss, params)

    lr = module.inner_lr.detach() if meta_sgd else module.base_inner_lr
    prompt_grad, lr_grad, thetas = reference_meta_gradients(
        backbone, raw, datamodule.collate.encoder, module.prompt, lr, 2, weights.tolist()
    )
    scale = prompt_grad.abs().max()
    torch.testing.assert_close(got[0], prompt_grad, rtol=1e-4, atol=1e-4 * scale)
    if meta_sgd:
        torch.testing.assert_close(got[1], lr_grad, rtol=1e-4, atol=1e-4 * lr_grad.abs().max())
    # The Hessian terms matter: first- and second-order gradients differ by far more than the tolerance.
    first_order = sum(
        w * torch.autograd.grad(module.loss(theta.requires_grad_(), episode["query"]), theta)[0]
        for w, theta in zip(weights.tolist(), thetas[1:], strict=True)
        if w > 0
    )
    assert (first_order - prompt_grad).abs().max() > 100 * 1e-4 * scale


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
def test_first_order_meta_gradient_is_the_query_gradient_at_the_adapted_prompt(model):
    backbone = BUILDERS[model]()
    module = meta_module(backbone, first_order=True, per_step_loss_weights=False)
    datamodule = episode_data(backbone)
    raw, episode = first_episode(datamodule)
    loss, _ = module.meta_loss(episode, module.step_weights())
    (got,) = torch.autograd.grad(loss, module.prompt)

    _, _, thetas = reference_meta_gradients(
        backbone, raw, datamodule.collate.encoder, module.prompt, 0.01, 2, [0, 1]
    )
    adapted = thetas[-1].requires_grad_()
    labels = torch.tensor([e.label for e in raw.query])
    expected = torch.autograd.grad(
        F.cross_entropy(
            reference_logits(backbone, adapted, raw.task, raw.query, datamodule.collate.encoder), labels
        ),
        adapted,
    )[0]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max())


def with_extra_padding(batch: dict, columns: int, pad_id: int) -> dict:
    """The same rows with ``columns`` more padding on the right of every token tensor."""
    values = {"input_ids": pad_id, "attention_mask": 0, "labels": -100}
    widened = dict(batch)
    for key, tensor in batch.items():
        kind = next((k for k in values if key.endswith(k)), None)
        if kind and isinstance(tensor, torch.Tensor) and tensor.dim() == 2:
            widened[key] = F.pad(tensor, (0, columns), value=values[kind])
    return widened


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
@pytest.mark.parametrize("first_order", [False, True])
def test_tasks_batched_in_one_pass_give_each_task_its_own_meta_loss_and_gradient(model, first_order):
    backbone = BUILDERS[model]()
    module = meta_module(backbone, first_order=first_order, learn_inner_lr=True, per_step_loss_weights=True)
    with torch.no_grad():
        module.inner_lr.uniform_(0.005, 0.02)
    datamodule = episode_data(backbone)
    sampler = datamodule.samplers["meta_train"]
    episodes = [datamodule.collate(sampler.episode(i)) for i in range(3)]
    pad_id = backbone.tokenizer.pad_token_id
    for part in ("support", "query"):  # one task padded wider, as a task of longer texts would be
        episodes[1][part] = with_extra_padding(episodes[1][part], 5, pad_id)
    weights = msl_weights(2, 1, 4)
    params = [module.prompt, module.inner_lr]

    losses, accuracies = module.batched_meta_loss(episodes, weights)
    batched_grads = torch.autograd.grad(losses.mean(), params)
    one_by_one = [module.meta_loss(e, weights) for e in episodes]
    expected = torch.stack([loss for loss, _ in one_by_one])
    expected_grads = torch.autograd.grad(expected.mean(), params)

    torch.testing.assert_close(losses, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(accuracies, torch.stack([a for _, a in one_by_one]))
    for got, want in zip(batched_grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max())
    assert losses.std() > 1e-4  # the tasks' losses differ, so a mix-up between tasks would show
    # Each row is scored under its own task's prompt, even where the prompts differ a lot.
    prompts = torch.randn(3, *module.prompt.shape)
    support = stack_task_batches([e["support"] for e in episodes], pad_id)
    alone = torch.stack([module.loss(p, e["support"]) for p, e in zip(prompts, episodes)])
    torch.testing.assert_close(module.task_losses(prompts, support), alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("first_order", [False, True])
def test_the_batched_step_s_memory_extrapolated_from_one_and_two_tasks_predicts_four(first_order):
    backbone = build_tiny_llama()
    module = meta_module(backbone, first_order=first_order, inner_steps=3, prompt_length=8)
    datamodule = episode_data(backbone, k_shot=4, query_shots=4)
    sampler = datamodule.samplers["meta_train"]
    episodes = [datamodule.collate(sampler.episode(i)) for i in range(4)]
    weights = module.step_weights()

    def peak(tasks: int) -> int:
        return cpu_peak_bytes(lambda: module.batched_meta_loss(episodes[:tasks], weights)[0].mean().backward())

    one, two, four = peak(1), peak(2), peak(4)
    assert four > 2.5 * one  # batching really holds the tasks' graphs at once
    assert extrapolate_peak(one, two, 4) == pytest.approx(four, rel=0.15)


@pytest.mark.parametrize("budget_gib, batched", [(1e-4, False), (64.0, True)])
def test_batch_tasks_auto_batches_only_within_its_memory_budget_and_says_so(budget_gib, batched, caplog):
    backbone = build_tiny_llama()
    datamodule = episode_data(backbone, tasks_per_step=4)
    prompts = {}
    for setting in ("auto", batched):
        L.seed_everything(0, verbose=False)
        module = meta_module(backbone, optimizer=functools.partial(torch.optim.AdamW, lr=0.05),
                             batch_tasks=setting, max_batch_memory_gib=budget_gib)
        with caplog.at_level(logging.INFO, logger="promptlearn.meta.maml"):
            meta_trainer(2).fit(module, datamodule=datamodule)
        prompts[setting] = module.prompt.detach()
    choice = [r.getMessage() for r in caplog.records if "meta.batch_tasks=auto" in r.getMessage()]
    assert len(choice) == 1  # decided once, at the first meta-step
    assert ("batching them" in choice[0]) == batched and "4 tasks" in choice[0]
    # The measuring passes leave no trace: auto trains exactly as the mode it chose.
    torch.testing.assert_close(prompts["auto"], prompts[batched], rtol=0, atol=0)


def test_an_unknown_batch_tasks_setting_is_one_clear_error():
    with pytest.raises(ConfigError, match="meta.batch_tasks must be true, false or auto"):
        meta_module(build_tiny_llama(), batch_tasks="sometimes")


def test_sdpa_runs_second_order_on_its_math_backend(caplog):
    eager, sdpa = build_tiny_llama(), build_tiny_llama(attn_implementation="sdpa")
    with caplog.at_level(logging.INFO, logger="promptlearn.meta.maml"):
        module = meta_module(sdpa)
    assert "math backend" in caplog.text
    reference = meta_module(eager)
    episode = first_episode(episode_data(eager))[1]
    with module._attention():
        loss, _ = module.meta_loss(episode, module.step_weights())
    (got,) = torch.autograd.grad(loss, module.prompt)
    (expected,) = torch.autograd.grad(
        reference.meta_loss(episode, reference.step_weights())[0], reference.prompt
    )
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_attention_without_double_backward_is_switched_to_eager(caplog):
    backbone = build_tiny_llama()
    backbone.model.set_attn_implementation("flex_attention")
    with caplog.at_level(logging.WARNING, logger="promptlearn.meta.maml"):
        meta_module(backbone)
    assert backbone.model.config._attn_implementation == "eager"
    assert "switching tiny_llama to eager" in caplog.text
    first_order = build_tiny_llama()
    first_order.model.set_attn_implementation("flex_attention")
    meta_module(first_order, first_order=True)  # first order needs no double backward: left alone
    assert first_order.model.config._attn_implementation == "flex_attention"


def test_msl_weights_follow_maml_plus_plus():
    torch.testing.assert_close(msl_weights(3, 0, 10), torch.full((3,), 1 / 3))
    torch.testing.assert_close(msl_weights(3, 5, 10), torch.tensor([1 / 6, 1 / 6, 2 / 3]))
    torch.testing.assert_close(
        msl_weights(3, 10, 10), torch.tensor([0.01, 0.01, 0.98])
    )  # floors at 0.03 / steps
    torch.testing.assert_close(msl_weights(3, 1000, 10), torch.tensor([0.01, 0.01, 0.98]))
    assert msl_weights(1, 7, 10).tolist() == [1.0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"inner_steps": 0}, "inner_steps must be at least 1"),
        ({"inner_lr": 0.0}, "inner_lr must be positive"),
        ({"eval_inner_steps": -1}, "eval_inner_steps must be at least 0"),
        ({"eval_inits": ["class_lable"]}, "Did you mean 'class_label'"),
    ],
)
def test_bad_settings_are_one_clear_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        meta_module(build_tiny_llama(), **kwargs)


def test_gradient_checkpointing_is_refused():
    backbone = build_tiny_llama()
    backbone.model.activation_checkpointing_enable()
    with pytest.raises(ConfigError, match="gradient checkpointing does not compose with torch.func"):
        meta_module(backbone)


def test_evaluation_under_inference_mode_says_how_to_fix_it():
    backbone = build_tiny_llama()
    module = meta_module(backbone)
    episode = first_episode(episode_data(backbone))[1]
    with torch.inference_mode(), pytest.raises(ConfigError, match="inference_mode=False"):
        module.adapted_accuracy(module.prompt, episode, 0.01)


def meta_trainer(steps: int) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        inference_mode=False,
    )


@pytest.mark.slow
def test_meta_training_beats_standard_inits_on_unseen_tasks():
    """On a family with a shared rule, the meta-learned init adapts to unseen tasks; standard inits do not."""
    L.seed_everything(0, verbose=False)
    backbone = build_tiny_llama()
    tasks = keyword_family(range(8))
    pools = {
        "meta_train": [TaskSource(t) for t in tasks[:6]],
        "meta_test": [TaskSource(t) for t in tasks[6:]],
    }
    datamodule = EpisodeDataModule(
        pools, backbone, n_way=2, k_shot=4, query_shots=4, tasks_per_step=4, test_episodes=24
    )
    module = MetaPromptTuning(
        backbone,
        functools.partial(torch.optim.AdamW, lr=0.1),
        prompt_length=8,
        init="random_uniform",
        inner_steps=2,
        inner_lr=0.003,
        per_step_loss_weights=False,
    )
    trainer = meta_trainer(30)
    trainer.test(module, datamodule=datamodule, verbose=False)
    before = module.meta_test["inits"][META_INIT]["mean"]
    trainer.fit(module, datamodule=datamodule)
    trainer.test(module, datamodule=datamodule, verbose=False)
    inits = module.meta_test["inits"]
    print({name: round(stats["mean"], 3) for name, stats in inits.items()}, "before:", before)
    assert inits[META_INIT]["mean"] > 0.7 and before < 0.65
    for name in ("random_uniform", "sampled_vocab", "class_label"):
        assert inits[META_INIT]["mean"] - inits[name]["mean"] > 0.2
        lower = inits[name]["meta_minus_this"]["mean"] - inits[name]["meta_minus_this"]["ci95"]
        assert lower > 0, f"meta-learned init is not significantly better than {name}"
    assert module.meta_test["episodes"] == 24


TOY = [
    "meta_experiment=toy",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "episodes.val_episodes=4",
    "episodes.test_episodes=6",
]


def test_meta_train_writes_the_meta_test_comparison_and_a_loadable_prompt(compose_train, tmp_path):
    from promptlearn.backbones import build_tiny_llama as tiny_llama
    from promptlearn.cli.meta import meta_train
    from promptlearn.methods.prompt_tuning import PromptTuning

    results = meta_train(compose_train(*TOY, "meta.learn_inner_lr=true", config_name="meta"))
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert (
        on_disk["method"] == "metaprompting"
        and on_disk["model"] == "tiny_llama"
        and on_disk["train_steps"] == 4
    )
    assert on_disk["tasks"]["meta_test"] == ["toy_8", "toy_9"] and len(on_disk["tasks"]["meta_train"]) == 6
    assert on_disk["trainable_params"] == 2 * 8 * 32  # prompt and its learned inner step sizes
    inits = on_disk["meta_test"]["inits"]
    assert set(inits) == {"meta", "random_uniform", "sampled_vocab", "class_label"}
    for stats in inits.values():
        values = stats["per_episode"]
        assert len(values) == 6 and stats["mean"] == pytest.approx(sum(values) / 6)
        assert stats["ci95"] == pytest.approx(1.959964 * statistics.stdev(values) / 6**0.5)
    assert 0 <= on_disk["val_metrics"]["val/score"] <= 1
    prompt = PromptTuning(tiny_llama(), EPISODE_INFO, prompt_length=8, init="random_uniform")
    prompt.load_prompt(
        on_disk["prompt_checkpoint"]
    )  # the meta-learned init is an ordinary prompt-tuning prompt


def test_meta_train_refuses_a_pool_smaller_than_the_batch_of_tasks(compose_train):
    from promptlearn.cli.meta import meta_train

    with pytest.raises(ConfigError, match="meta_train pool has 6 task"):
        meta_train(compose_train(*TOY, "episodes.tasks_per_step=8", config_name="meta"))


@pytest.mark.slow
def test_cli_multirun_writes_one_results_file_per_job(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "promptlearn.cli.meta",
            "-m",
            *TOY,
            "trainer.max_steps=2",
            "meta.first_order=true,false",
            f"hydra.sweep.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = sorted(tmp_path.glob("*/results.json"))
    assert len(results) == 2
    assert {json.loads(path.read_text())["first_order"] for path in results} == {True, False}


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
def test_meta_test_adapting_many_pairs_at_once_equals_one_at_a_time(model):
    backbone = BUILDERS[model]()
    module = meta_module(backbone, learn_inner_lr=True, eval_inits=("random_uniform", "sampled_vocab", "class_label"))
    with torch.no_grad():
        module.inner_lr.uniform_(0.5, 2.0)  # large steps, so that adaptation changes predictions
    datamodule = episode_data(backbone, test_episodes=6)
    episodes = [episode for batch in datamodule.test_dataloader() for episode in batch]
    starts, pairs, lrs = [], [], []
    for episode in episodes:
        for init in module.eval_inits:
            starts.append(module.baseline_prompt(init, episode))
            pairs.append(episode)
            lrs.append(3.0)
        starts.append(module.prompt)
        pairs.append(episode)
        lrs.append(module.inner_lr.detach())
    module.eval_tasks_per_pass = 32
    together = module.adapted_accuracies(starts, pairs, lrs)
    module.eval_tasks_per_pass = 1
    alone = module.adapted_accuracies(starts, pairs, lrs)
    assert together.tolist() == alone.tolist()
    without_adapting = MetaPromptTuning.adapted_accuracies
    module.eval_inner_steps = 0
    assert without_adapting(module, starts, pairs, lrs).tolist() != alone.tolist()  # adaptation changed something


@pytest.mark.parametrize("first_order", ["true", "false"])
def test_metaprompting_runs_on_gemma3s_quirks(compose_train, tmp_path, first_order):
    from promptlearn.cli.meta import meta_train

    results = meta_train(compose_train(*TOY, "model=tiny_gemma3", f"meta.first_order={first_order}",
                                       "meta.inner_lr=0.003", config_name="meta"))
    assert results["model"] == "tiny_gemma3" and results["train_steps"] == 4
    inits = results["meta_test"]["inits"]
    assert set(inits) == {"meta", "random_uniform", "sampled_vocab", "class_label"}
    assert all(0.0 <= stats["mean"] <= 1.0 for stats in inits.values())
