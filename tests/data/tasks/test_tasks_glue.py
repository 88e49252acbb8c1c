"""GLUE's SST-2, MRPC and QQP from fixture files in the hub's schema, and the configs that let prompts transfer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from promptlearn.data.tasks.glue import MRPC, QQP, SST2

FIXTURES = Path(__file__).parents[2] / "fixtures" / "glue"


def test_sst2_mrpc_qqp_read_the_hub_schema():
    sst2 = SST2(path=str(FIXTURES / "sst2"), heldout_fraction=0).load_splits()
    assert sst2["train"][1].fields == {"sentence": "the plot is dull and the jokes fall flat "}
    assert sst2["train"][1].target == " negative"
    mrpc = MRPC(path=str(FIXTURES / "mrpc"), heldout_fraction=0).load_splits()
    assert mrpc["train"][2].fields == {"sentence1": "The shares closed up 5 cents at $ 10.20 .", "sentence2": "The stock ended 5 cents higher at $ 10.20 ."}
    assert (mrpc["train"][2].label, mrpc["train"][2].target) == (1, " yes")
    qqp = QQP(path=str(FIXTURES / "qqp"), heldout_fraction=0).load_splits()
    assert (qqp["test"][1].fields["question2"], qqp["test"][1].label) == ("What is the boiling point of water?", 0)
    assert MRPC().metrics == ("accuracy", "f1") and QQP().metrics == ("accuracy", "f1")


@pytest.mark.parametrize(("source", "target"), [("qqp", "mrpc"), ("rotten_tomatoes", "sst2")])
def test_transfer_pairs_share_label_words_and_template_wording(compose_train, source, target):
    """A prompt trained on one task of a pair is evaluated on the other: the model must see the same format."""
    a, b = (instantiate(compose_train(f"task={name}").task, _convert_="all") for name in (source, target))
    assert tuple(a.label_words) == tuple(b.label_words)
    texts = ("first", "second")
    assert a.render(dict(zip(a.input_fields, texts))) == b.render(dict(zip(b.input_fields, texts)))
