"""The embedded demo corpus for `make demo`: short movie-review sentences the project writes itself.

It is a DEMO set, made from hand-written phrase templates (positive vs negative), not real reviews:
good for showing the pipeline end to end offline, meaningless as a benchmark.
"""

from __future__ import annotations

import itertools

import numpy as np

from cnnapp.data import RawData
from cnnapp.data.text import TEXT_SOURCES


SUBJECTS = ["the film", "this movie", "the story", "the cast", "the script", "the director's new work",
            "the soundtrack", "the final act", "her performance", "the animation"]
POSITIVE = ["is a joy to watch", "is moving and beautifully acted", "is funny , warm and smart",
            "works wonderfully", "is a gripping , heartfelt triumph", "left me smiling",
            "is one of the best of the year", "is clever and surprisingly touching",
            "shines from start to finish", "is a delight"]
NEGATIVE = ["is dull and lifeless", "is a tedious mess", "falls flat", "is far too long and boring",
            "is a waste of time", "left me cold", "is clumsy , loud and forgettable",
            "never comes together", "is painfully predictable", "is a disappointment"]
ENDINGS = ["", " .", " !", " , honestly .", " , and i mean it ."]


def demo_corpus() -> tuple[list[str], np.ndarray]:
    """500 sentences (250 per class), deterministic."""
    sentences, labels = [], []
    for label, predicates in ((0, NEGATIVE), (1, POSITIVE)):
        for i, (subject, predicate) in enumerate(itertools.product(SUBJECTS, predicates)):
            for ending in ENDINGS[i % 2::2][:3]:
                sentences.append(f"{subject} {predicate}{ending}".strip())
                labels.append(label)
    keep = np.random.default_rng(0).permutation(len(sentences))[:500]
    keep = keep[np.argsort(np.asarray(labels)[keep], kind="stable")]
    return [sentences[i] for i in keep], np.asarray(labels, dtype=np.int64)[keep]


@TEXT_SOURCES.register("demo", claims=lambda r: not r.data and not r.dataset, priority=10)
def load_demo(request) -> RawData:
    """The embedded demo corpus (no --data): 500 templated movie-review sentences."""
    sentences, labels = demo_corpus()
    return RawData(x=np.asarray(sentences, dtype=object), y=labels, class_names=["negative", "positive"],
                   name="demo-sentences", test_fraction=0.2,
                   description={"source": "embedded demo sentences (templated, not real reviews)"})
