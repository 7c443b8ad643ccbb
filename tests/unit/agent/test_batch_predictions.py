"""BatchPredictions: a lazy Sequence[Prediction] over a batch's answer columns (pure logic)."""

from __future__ import annotations

import numpy as np

from edgefleet.agent.batch_predictions import BatchPredictions
from edgefleet.runtime.bundle import Interpretation, Prediction


def test_it_reads_like_the_list_of_predictions_it_stands_for() -> None:
    values = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    answers = Interpretation(labels=["a", "b", None], scores=[0.9, 0.8, None], values=values)
    lazy = BatchPredictions(answers)
    eager = [
        Prediction(label, score, row)
        for label, score, row in zip(answers.labels, answers.scores, values, strict=True)
    ]
    assert len(lazy) == 3
    assert [(p.label, p.score, p.values.tolist()) for p in lazy] == [
        (p.label, p.score, p.values.tolist()) for p in eager
    ]
    assert [p.label for p in lazy[1:]] == ["b", None]
    assert lazy[-1].label is None
    assert lazy.answers is answers
