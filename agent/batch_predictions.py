"""A batch's predictions for the batch observers, built per window only when one is read.

The writer thread hands every batch's answers to the observers (drift). Building one
:class:`~edgefleet.runtime.bundle.Prediction` per window costs about half a ``Model.predict`` of the
demo model on a batch of 16; the drift observer reads the columns (``answers.labels``,
``answers.scores``) instead, and skips batches outright when its CPU budget is spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

from edgefleet.runtime.bundle import Interpretation, Prediction

__all__ = ["BatchPredictions"]


class BatchPredictions(Sequence[Prediction]):
    """``Sequence[Prediction]`` over an :class:`Interpretation`; ``answers`` holds its columns."""

    __slots__ = ("answers",)

    def __init__(self, answers: Interpretation) -> None:
        self.answers = answers

    def __len__(self) -> int:
        return len(self.answers)

    @overload
    def __getitem__(self, index: int) -> Prediction: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Prediction]: ...

    def __getitem__(self, index: int | slice) -> Prediction | Sequence[Prediction]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        a = self.answers
        return Prediction(a.labels[index], a.scores[index], a.values[index])
