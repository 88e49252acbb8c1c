"""A synthetic family of classification tasks, for offline demos and tests of meta-learning.

Every task of the family shares one rule: a text contains one keyword, and the keyword decides
the class (``keywords[c]`` -> ``label_words[c]``). Tasks differ in the filler words around the
keyword, so each is a different input distribution, and a prompt that encodes the shared rule is an
initialisation that helps every task, including unseen ones. A tiny random backbone knows nothing
of the rule, so a few small inner steps from a standard init do not find it. (On tiny random
backbones a rule learned under one template does not carry over to another, so the family keeps one.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from promptlearn.data.tasks import Example, Task
from promptlearn.utils.errors import ConfigError


@dataclass
class ToyKeywordTask(Task):
    """``size`` examples per class: filler words with the class keyword at a random position."""

    name: str = "toy_keywords"
    template: str = "{text} =>"
    label_words: tuple[str, ...] = ("A", "B", "C", "D")
    keywords: tuple[str, ...] = ("sun", "rain", "snow", "wind")
    fillers: tuple[str, ...] = ("la", "di", "da")
    length: int = 4
    size: int = 24
    seed: int = 0

    def load_splits(self) -> dict[str, list[Example]]:
        rng = random.Random(f"{self.name}-{self.seed}")
        examples = []
        for _ in range(self.size):
            for label, keyword in enumerate(self.keywords):
                words = [rng.choice(self.fillers) for _ in range(self.length - 1)]
                words.insert(rng.randrange(self.length), keyword)
                target = self.label_words[label]
                examples.append(Example({"text": " ".join(words)}, target, tuple(self.label_words), label))
        rng.shuffle(examples)
        return {"train": examples}


CONSONANTS = "bdfgklmnprtvz"


def keyword_family(indices: range | list[int], **kwargs: object) -> list[ToyKeywordTask]:
    """Tasks ``toy_<i>`` of the family (``i < 13``); task ``i``'s fillers are two syllables of its own."""
    tasks = []
    for i in indices:
        if not 0 <= i < len(CONSONANTS):
            raise ConfigError(f"the toy keyword family has tasks 0..{len(CONSONANTS) - 1}, not {i}")
        tasks.append(
            ToyKeywordTask(
                name=f"toy_{i}", fillers=(CONSONANTS[i] + "a", CONSONANTS[i] + "i"), seed=i, **kwargs
            )
        )
    return tasks
