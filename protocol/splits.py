"""Deterministic, group-aware, class-stratified train/test splits (seed 0)."""

from __future__ import annotations

from collections import defaultdict
from typing import Hashable, Sequence

import numpy as np

SEED = 0
TEST_FRACTION = 0.2


class UnionFind:
    """Groups of item indices; ``union(i, j)`` puts i and j in one group."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def groups(self) -> list[int]:
        """A group id per item: the smallest index in its group."""
        return [self.find(i) for i in range(len(self.parent))]


def group_by_keys(keys: Sequence[Sequence[Hashable]]) -> list[int]:
    """Items sharing any key (e.g. a content sha256) land in one group."""
    uf = UnionFind(len(keys))
    first: dict[Hashable, int] = {}
    for i, item_keys in enumerate(keys):
        for key in item_keys:
            if key in first:
                uf.union(first[key], i)
            else:
                first[key] = i
    return uf.groups()


def stratified_group_split(labels: Sequence[str], groups: Sequence[Hashable],
                           test_fraction: float = TEST_FRACTION, seed: int = SEED) -> list[bool]:
    """True for test items. Whole groups go to one side; each class gets about
    ``test_fraction`` of its items in test (a group counts for its most common class)."""
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    by_class: dict[str, list[Hashable]] = defaultdict(list)
    for g, idx in members.items():
        names = [labels[i] for i in idx]
        by_class[max(sorted(set(names)), key=names.count)].append(g)

    rng = np.random.default_rng(seed)
    is_test = [False] * len(labels)
    for name in sorted(by_class):
        group_ids = sorted(by_class[name], key=lambda g: min(members[g]))
        order = rng.permutation(len(group_ids))
        size = sum(len(members[g]) for g in group_ids)
        target = test_fraction * size
        taken = 0
        for k in order:
            g = group_ids[k]
            n = len(members[g])
            if taken < target and abs(taken + n - target) < abs(taken - target):
                for i in members[g]:
                    is_test[i] = True
                taken += n
        if taken == 0 and len(group_ids) > 1:  # tiny sets: still one group in test
            for i in members[group_ids[order[0]]]:
                is_test[i] = True
    return is_test
