"""Send the device's least confident share of windows: the share-targeted fallback policy.

A fixed confidence threshold does not transfer from one wearer (or site, or season) to another:
the edge model's confidence levels shift, and with them the share of windows a threshold sends
(chosen at 25 % on validation subjects, 0.57 sent 16 % of the held-out subjects' windows). What a
user can state in advance is a share: "spend up to X % of windows on the cloud". :class:`ShareTarget`
keeps the uncertainty scores of the last ``window`` windows in a ring and claims a window when its
score is among the ``target`` most uncertain of them - the recent ``1 - target`` quantile, read
again every batch, so the threshold follows the confidence levels of whoever is wearing the device.

The uncertainty score (:func:`uncertainty`) is one of ``confidence`` (1 - top probability),
``margin`` (1 - top-2 margin) or ``entropy`` (entropy over log K); higher is less sure.

Windows tied with the quantile (the int8 edge model's probabilities take 256 levels, so ties are
common) are claimed in the proportion that brings the share to the target, deterministically
through a running credit, not all or none. The ring starts empty: the first windows are judged
against the few scores seen so far, and the ring restarts when the model changes (another model's
scores are calibrated another way). This is the only fallback policy with state; the router calls
it under its inference thread only (one batch at a time), so it takes no lock.

Only numpy: models/build_watch.py imports this module to choose the share on validation subjects.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["REASON", "SCORES", "ScoreKind", "ShareTarget", "uncertainty"]

ScoreKind = Literal["confidence", "margin", "entropy"]
SCORES: tuple[ScoreKind, ...] = ("confidence", "margin", "entropy")
REASON = "least_confident"
"""The fallback reason of a window claimed by this policy (it ranks among the least confident)."""


def uncertainty(probs: npt.ArrayLike, kind: ScoreKind) -> npt.NDArray[np.float64]:
    """Per row of class probabilities ``(N, K)``, how unsure it is (higher: less sure), 0..1."""
    rows = np.asarray(probs, dtype=np.float64)
    rows = rows.reshape(1, -1) if rows.ndim < 2 else rows.reshape(rows.shape[0], -1)
    classes = rows.shape[1]
    if rows.shape[0] == 0:
        return np.zeros(0)
    if kind == "confidence":
        result: npt.NDArray[np.float64] = 1.0 - rows.max(axis=1)
        return result
    if classes < 2:
        return np.zeros(rows.shape[0])
    if kind == "margin":
        top2 = np.partition(rows, -2, axis=1)[:, -2:]
        margin: npt.NDArray[np.float64] = 1.0 - (top2[:, 1] - top2[:, 0])
        return margin
    if kind == "entropy":
        logs = np.log(np.where(rows > 0, rows, 1.0))
        entropy: npt.NDArray[np.float64] = -(rows * logs).sum(axis=1) / math.log(classes)
        return entropy
    raise ValueError(f"unknown uncertainty score {kind!r}; expected one of {', '.join(SCORES)}")


class ShareTarget:
    """Claims about ``target`` (0..1) of the windows it is shown: those whose uncertainty ranks in
    the top ``target`` of the last ``window`` scores; see the module docstring."""

    def __init__(self, target: float, *, window: int = 500, score: ScoreKind = "confidence") -> None:
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"target share {target!r} is outside 0..1; expected e.g. 0.25 for a quarter")
        if window < 1:
            raise ValueError(f"window {window!r} must hold at least one score; expected e.g. 500")
        if score not in SCORES:
            raise ValueError(f"unknown uncertainty score {score!r}; expected one of {', '.join(SCORES)}")
        self.target = float(target)
        self.window = int(window)
        self.score: ScoreKind = score
        self._ring = np.zeros(self.window, dtype=np.float64)
        self._filled = 0
        self._next = 0
        self._credit = 0.0
        self._model: str | None = None
        self.threshold: float | None = None
        """The uncertainty above which the last batch's windows were claimed (None before any)."""

    @property
    def seen(self) -> int:
        """Scores in the ring now (at most ``window``)."""
        return self._filled

    def _push(self, scores: npt.NDArray[np.float64]) -> None:
        # Only the newest ``window`` scores of a batch larger than the ring matter.
        newest = scores[-self.window :]
        self._ring[(self._next + np.arange(newest.size)) % self.window] = newest
        self._next = (self._next + newest.size) % self.window
        self._filled = min(self.window, self._filled + newest.size)

    def claim(self, scores: npt.ArrayLike, model: str | None = None) -> npt.NDArray[np.bool_]:
        """Per uncertainty score of one batch (:func:`uncertainty`), whether to send that window.

        ``model`` names the model that scored them: the ring restarts when it changes."""
        batch = np.asarray(scores, dtype=np.float64).reshape(-1)
        if model != self._model:
            self._model, self._filled, self._next, self._credit = model, 0, 0, 0.0
        if batch.size == 0:
            return np.zeros(0, dtype=bool)
        self._push(batch)
        recent = self._ring[: self._filled]
        if self.target >= 1.0:
            self.threshold = -math.inf
            return np.ones(batch.size, dtype=bool)
        if self.target <= 0.0:
            self.threshold = math.inf
            return np.zeros(batch.size, dtype=bool)
        cut = float(np.quantile(recent, 1.0 - self.target, method="lower"))
        self.threshold = cut
        above = float((recent > cut).mean())
        tied = float((recent == cut).mean())
        # Of the windows tied with the cut, the share that brings the recent share to the target.
        tie_share = min(1.0, max(0.0, (self.target - above) / tied)) if tied > 0 else 0.0
        claims = batch > cut
        ties = np.flatnonzero(batch == cut)
        if ties.size and tie_share > 0:
            # Each tie adds tie_share to a running credit; a tie is claimed where the credit passes
            # a whole number, so the ties claimed over a run come to tie_share of them.
            credit = self._credit + tie_share * np.arange(1, ties.size + 1)
            passed = np.floor(credit) > np.floor(np.concatenate(([self._credit], credit[:-1])))
            claims[ties[passed]] = True
            self._credit = float(credit[-1] - np.floor(credit[-1]))
        return claims
