"""PEZ for CLIP: the text tower on embeddings, exact projection, a planted inversion, images, outputs, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from promptlearn.clip.backbone import TINY_WORDS, ClipBackbone, build_tiny_clip
from promptlearn.clip.images import EmbeddingBatches, ImageDataModule, image_paths, load_images
from promptlearn.utils.errors import ConfigError, DataError
from promptlearn.clip.pez_clip import PEZClip, target_direction
from promptlearn.prompts.projection import project_to_vocab

PLANTED = "a red cat painting"


@pytest.fixture(scope="module")
def clip() -> ClipBackbone:
    return build_tiny_clip()


def write_pngs(folder: Path, colors=("red", "navy", "olive")) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, color in enumerate(colors):
        path = folder / f"{i}.png"
        Image.new("RGB", (40 + 8 * i, 30), color).save(path)
        paths.append(path)
    return paths


class PlantedVisionTower(nn.Module):
    """Stands in for CLIP's vision tower: every image's pooled output is the planted embedding."""

    def __init__(self, embedding: torch.Tensor) -> None:
        super().__init__()
        self.embedding = embedding
        self.calls = 0

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        self.calls += 1
        return BaseModelOutputWithPooling(pooler_output=self.embedding.expand(len(pixel_values), -1))


def planted_clip(text: str) -> tuple[ClipBackbone, torch.Tensor]:
    """A tiny CLIP whose images all embed to the text embedding of ``text``."""
    clip = build_tiny_clip()
    with torch.no_grad():
        target = clip.text_embeddings_from_ids(clip.tokenizer(text, return_tensors="pt")["input_ids"])[0]
    clip.model.vision_model = PlantedVisionTower(target)
    clip.model.visual_projection = nn.Identity()
    return clip, target


class LossHistory(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def fit(module: PEZClip, datamodule: L.LightningDataModule, steps: int) -> LossHistory:
    history = LossHistory()
    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[history],
    )
    trainer.fit(module, datamodule=datamodule)
    return history


# ----------------------------------------------------------------- backbone and projection
def test_tiny_tokenizer_keeps_every_word_one_token_and_round_trips(clip):
    for word in TINY_WORDS:
        ids = clip.tokenizer(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and clip.tokenizer.decode(ids) == word


def test_text_tower_on_embeddings_matches_the_models_own_forward_on_ids(clip):
    ids = clip.tokenizer(["a red cat painting", "the sun over the sea"], padding=False)["input_ids"]
    for row in ids:
        reference = clip.model.get_text_features(input_ids=torch.tensor([row])).pooler_output[0]
        ours = clip.text_embeddings_from_prompt(clip.token_embeddings[row[1:-1]][None])[0]
        torch.testing.assert_close(ours, F.normalize(reference, dim=-1), rtol=0, atol=1e-6)


def test_projection_returns_exact_rows_of_the_clip_vocabulary(clip):
    torch.manual_seed(0)
    table = clip.token_embeddings
    continuous = torch.randn(6, table.shape[1], requires_grad=True)
    projection = project_to_vocab(continuous, table)
    cosine = F.normalize(continuous.detach(), dim=-1) @ F.normalize(table, dim=-1).T
    assert torch.equal(projection.token_ids, cosine.argmax(dim=1))
    assert torch.equal(projection.embeds.detach(), table[projection.token_ids])


def test_prompt_longer_than_the_context_is_refused(clip):
    assert clip.context_length == 77
    PEZClip(clip, prompt_length=75)
    with pytest.raises(ConfigError, match=r"prompt length 76 plus BOS and EOS exceeds tiny_clip's 77-token context; "
                                          r"set method.prompt_length=75 or less"):
        PEZClip(clip, prompt_length=76)
    with pytest.raises(ConfigError, match="at least 1"):
        PEZClip(clip, prompt_length=0)


# ----------------------------------------------------------------- the planted inversion
def test_planted_images_are_inverted_to_a_prompt_far_better_than_random(tmp_path):
    clip, target = planted_clip(PLANTED)
    write_pngs(tmp_path / "images")
    datamodule = ImageDataModule(clip, str(tmp_path / "images"), seed=0)
    datamodule.setup("fit")
    assert clip.model.vision_model.calls == 1  # embedded once, not every step
    torch.testing.assert_close(datamodule.embeddings, target.expand(3, -1), rtol=0, atol=1e-6)

    L.seed_everything(0, verbose=False)
    module = PEZClip(clip, prompt_length=4, whole_words=True)
    history = fit(module, datamodule, steps=200)
    assert len(history.losses) == 200
    assert history.losses[0] > 0.05 > sum(history.losses[-20:]) / 20  # the loss drops

    found = module.result(datamodule.embeddings)
    generator = torch.Generator().manual_seed(1)
    random = [
        module.ids_similarity(module.candidate_ids[torch.randint(len(module.candidate_ids), (4,), generator=generator)].tolist(), target[None])
        for _ in range(20)
    ]
    assert found["similarity"] > max(random)
    assert found["similarity"] > sum(random) / len(random) + 0.15
    assert found["similarity"] == pytest.approx(module.best_similarity, abs=1e-6)  # the best prompt seen is the one kept
    assert found["initial_similarity"] < found["similarity"]
    # Whole words round-trip, so the pasted string scores what the projected ids scored.
    assert found["round_trips"] and found["retokenized_ids"] == found["token_ids"]
    assert found["text_similarity"] == pytest.approx(found["similarity"], abs=1e-5)
    assert len(found["per_image_text_similarity"]) == 3


def test_a_string_that_does_not_round_trip_reports_the_difference(clip):
    module = PEZClip(clip, prompt_length=2)
    pieces = clip.tokenizer.convert_tokens_to_ids(["ca", "t</w>"])  # decodes to "cat", which is one other token
    module.best_ids = pieces
    images = clip.text_embeddings_from_ids(clip.tokenizer("a dog", return_tensors="pt")["input_ids"])
    result = module.result(images)
    assert result["prompt"] == "cat" and not result["round_trips"]
    assert result["retokenized_ids"] == clip.tokenizer("cat", add_special_tokens=False)["input_ids"] != pieces
    expected_plain = float(clip.text_embeddings_from_ids(clip.tokenizer("cat", return_tensors="pt")["input_ids"])[0] @ images[0])
    assert result["text_similarity"] == pytest.approx(expected_plain, abs=1e-6)
    assert result["similarity_difference"] == pytest.approx(result["text_similarity"] - result["similarity"])
    assert abs(result["similarity_difference"]) > 1e-3


# ----------------------------------------------------------------- images
def test_images_from_a_folder_and_from_a_list(tmp_path):
    paths = write_pngs(tmp_path / "images")
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    assert image_paths(str(tmp_path / "images")) == paths
    assert image_paths([str(p) for p in paths[:2]]) == paths[:2]
    images = load_images(paths)
    assert [im.size for im in images] == [(40, 30), (48, 30), (56, 30)] and images[0].getpixel((0, 0)) == (255, 0, 0)


def test_batch_sampling_draws_distinct_images_per_step_and_always_offers_all():
    embeddings = torch.eye(5)
    stream = iter(EmbeddingBatches(embeddings, batch_size=2, seed=0))
    batches = [next(stream) for _ in range(20)]
    chosen = [tuple(b["image_embeds"].argmax(1).tolist()) for b in batches]
    assert all(len(set(c)) == 2 for c in chosen) and len(set(chosen)) > 3
    assert all(torch.equal(b["all_image_embeds"], embeddings) for b in batches)
    again = iter(EmbeddingBatches(embeddings, batch_size=2, seed=0))
    assert [tuple(next(again)["image_embeds"].argmax(1).tolist()) for _ in range(20)] == chosen
    assert torch.equal(next(iter(EmbeddingBatches(embeddings, None, 0)))["image_embeds"], embeddings)


def test_target_direction_ranks_prompts_as_the_mean_per_image_cosine():
    torch.manual_seed(0)
    images, texts = F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(10, 8), dim=-1)
    ours = texts @ target_direction(images)
    papers = (texts @ images.T).mean(dim=1)
    assert torch.equal(ours.argsort(), papers.argsort())


def test_empty_folder_unreadable_file_and_missing_paths_are_clear_errors(tmp_path, clip):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no images here")
    with pytest.raises(DataError, match=r"image folder .*empty holds no image files"):
        image_paths(str(empty))
    broken = tmp_path / "broken"
    write_pngs(broken)
    (broken / "3.png").write_bytes(b"definitely not a png")
    with pytest.raises(DataError, match=r"cannot read image .*3\.png .*remove or replace the file"):
        ImageDataModule(clip, str(broken)).setup("fit")
    with pytest.raises(DataError, match="does not exist"):
        image_paths(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="image files not found: .*gone.png"):
        image_paths([str(tmp_path / "gone.png")])
    with pytest.raises(DataError, match="set targets.images"):
        image_paths(None)


def test_pez_clip_under_promptlearn_train_points_to_promptlearn_invert(compose_train, toy_sentiment):
    from promptlearn.cli.components import build_method
    from promptlearn.backbones import build_tiny_t5

    cfg = compose_train("method=pez_clip", "model=tiny_t5")
    with pytest.raises(ConfigError, match="run promptlearn-invert targets.images=path/to/folder instead of promptlearn-train"):
        build_method(cfg, build_tiny_t5(), toy_sentiment)


# ----------------------------------------------------------------- the command
def test_invert_writes_results_prompt_and_figure(compose_train, tmp_path):
    from promptlearn.cli.invert import invert

    paths = write_pngs(tmp_path / "images")
    cfg = compose_train(f"targets.images={tmp_path / 'images'}", "trainer.max_steps=20", "method.prompt_length=3",
                        "targets.batch_size=2", config_name="invert")
    assert cfg.optimizer.lr == 0.1 and cfg.optimizer.weight_decay == 0.1 and cfg.method.prompt_length == 3
    results = invert(cfg)
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    assert results["method"] == "pez_clip" and results["model"] == "tiny_clip" and results["train_steps"] == 20
    assert results["images"] == [str(p) for p in paths] and results["batch_size"] == 2
    assert results["prompt_length"] == 3 and len(results["token_ids"]) == 3 and results["trainable_params"] == 3 * 32
    assert results["similarities_agree"] == (abs(results["text_similarity"] - results["similarity"]) <= 1e-4)
    assert (tmp_path / "prompt.txt").read_text() == results["prompt"] + "\n"
    with Image.open(tmp_path / "prompt.png") as figure:
        assert figure.format == "PNG" and figure.width > figure.height


def test_invert_defaults_follow_the_papers_sample_config(compose_train):
    cfg = compose_train(config_name="invert")
    assert (cfg.method.prompt_length, cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.trainer.max_steps) == (16, 0.1, 0.1, 3000)
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.targets.batch_size is None


def test_invert_command_reports_an_empty_folder_in_one_line(tmp_path, monkeypatch, capsys):
    from hydra.core.global_hydra import GlobalHydra

    from promptlearn.cli.invert import main

    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(sys, "argv", ["promptlearn-invert", f"targets.images={tmp_path / 'empty'}", f"hydra.run.dir={tmp_path / 'run'}"])
    GlobalHydra.instance().clear()
    try:
        with pytest.raises(SystemExit) as exit_:
            main()
    finally:
        GlobalHydra.instance().clear()
    assert exit_.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: image folder {tmp_path / 'empty'} holds no image files (.png, .jpg, ...); "
                      "add images or point targets.images elsewhere"]
