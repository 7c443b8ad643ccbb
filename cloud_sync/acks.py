"""Message-id ranges: how ``ack`` bodies and the controller's gap detection describe id sets.

A device's outbox ids grow by one per row, so the ids a controller stored in one batch are
mostly runs: ``[[41, 80]]`` instead of forty numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

__all__ = ["Range", "expand_ranges", "merge_ranges", "missing_ranges", "to_ranges"]

Range = tuple[int, int]
"""Inclusive ``(first, last)``."""


def to_ranges(ids: Iterable[int]) -> list[Range]:
    """Sorted, merged inclusive ranges covering exactly ``ids``."""
    out: list[list[int]] = []
    for i in sorted(set(ids)):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return [(a, b) for a, b in out]


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Union of ranges (overlapping or adjacent ones joined), sorted."""
    out: list[list[int]] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    return [(a, b) for a, b in out]


def expand_ranges(ranges: Iterable[Range]) -> Iterator[int]:
    for first, last in ranges:
        yield from range(first, last + 1)


def missing_ranges(have: Sequence[Range], below: int) -> list[Range]:
    """Ids in ``[first id of have, below)`` that no range of ``have`` (merged, sorted) covers."""
    gaps: list[Range] = []
    if not have:
        return gaps
    upto = have[0][0] - 1
    for first, last in have:
        if first >= below:
            break
        if first > upto + 1:
            gaps.append((upto + 1, first - 1))
        upto = max(upto, last)
    if upto + 1 < below:
        gaps.append((upto + 1, below - 1))
    return gaps
