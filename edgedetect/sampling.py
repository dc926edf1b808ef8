"""The one way to draw a subset of images: seeded, and stratified by label where labels are known.

Three draws, each reproducible from its seed (numpy ``default_rng``):

* :func:`limit_sample` is what ``--limit N`` means for ``evaluate`` and ``bench``: N images drawn at random with
  seed 0, each label (REAL, FAKE, and for the bench "no class folder") keeping its share of the N, returned in
  file order. With one label (or no labels) it is a plain seeded random subset.
* :func:`balanced_sample`: N items as equal per class as the classes allow (int8 calibration sets).
* :func:`stratified_split`: a share of every class held out (the validation split carved from train).
"""

from __future__ import annotations

import numpy as np

LIMIT_SEED = 0
LIMIT_HELP = ("a random subset drawn with a fixed seed, each class keeping its share, so the same N gives the same "
              "images on every run")


def limit_sample(n: int, limit: int | None, labels=None, seed: int = LIMIT_SEED) -> np.ndarray:
    """Sorted indices of ``min(limit, n)`` of ``n`` items (all of them when ``limit`` is None).

    Args:
        n: how many items there are.
        limit: how many to keep.
        labels: one label per item (any values; -1 for unknown is a stratum of its own), or None.
        seed: the seed of the draw.

    Each label gets ``limit`` times its share of the items, rounded by largest remainder, so the counts add up
    to ``limit``; within a label the items are a seeded random permutation's first ones.
    """
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.permutation(n)[:limit])
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * limit / n
    take = np.floor(quota).astype(int)
    by_remainder = np.argsort(-(quota - take), kind="stable")
    take[by_remainder[: limit - int(take.sum())]] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))


def balanced_sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(n, len(y))`` items, as equal per class as the classes allow, chosen with ``seed``."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    pools = {c: rng.permutation(np.flatnonzero(y == c)) for c in classes}
    take = {c: 0 for c in classes}
    left = min(n, len(y))
    while left > 0:
        open_classes = [c for c in classes if take[c] < len(pools[c])]
        share = max(1, left // len(open_classes))
        for c in open_classes:
            add = min(share, len(pools[c]) - take[c], left)
            take[c] += add
            left -= add
            if not left:
                break
    return np.sort(np.concatenate([pools[c][: take[c]] for c in classes])) if len(y) else np.zeros(0, int)


def stratified_split(y: np.ndarray, fraction: float, seed: int, classes=(0, 1)) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held out)`` sorted indices: ``round(fraction * count)`` of each of ``classes`` held out, seeded."""
    rng = np.random.default_rng(seed)
    held = []
    for label in classes:
        idx = np.flatnonzero(y == label)
        held.append(rng.permutation(idx)[: int(round(fraction * len(idx)))])
    is_held = np.zeros(len(y), bool)
    is_held[np.concatenate(held)] = True
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)
