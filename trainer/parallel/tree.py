"""The one fixed binary tree in which the micro-shards' partials are summed.

A node (level, index) stands for the sum of leaves [index * 2**level, (index + 1) * 2**level): a
leaf is level 0, the root (log2 MICRO_SHARDS, 0). Every node's value is its left child's plus its
right child's, always in that order. So whoever holds all the leaves under a node may compute it,
and a root computed from any set of nodes that tile the leaves has the same bits: floating-point
addition is not associative, but here the association never changes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from trainer.parallel.shards import MICRO_SHARDS

Node = tuple[int, int]  # (level, index)
ROOT_LEVEL = MICRO_SHARDS.bit_length() - 1
ROOT: Node = (ROOT_LEVEL, 0)
assert 1 << ROOT_LEVEL == MICRO_SHARDS, "the reduction tree is binary: MICRO_SHARDS must be a power of two"


def leaves_of(node: Node) -> range:
    level, index = node
    return range(index << level, (index + 1) << level)


def cover(leaves: range) -> list[Node]:
    """The fewest tree nodes that tile the contiguous leaves, left to right (as a segment tree
    decomposes a range): what a worker owning those micro-shards sums locally and sends on."""
    start, stop = leaves.start, leaves.stop
    if not 0 <= start <= stop <= MICRO_SHARDS:
        raise ValueError(f"leaves {start}..{stop} are not within 0..{MICRO_SHARDS}")
    nodes: list[Node] = []
    while start < stop:
        level = 0
        # grow while the node stays aligned and inside the range
        while level < ROOT_LEVEL and start % (1 << (level + 1)) == 0 and start + (1 << (level + 1)) <= stop:
            level += 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def node_value(node: Node, leaves: Mapping[int, np.ndarray]) -> np.ndarray:
    """A node's value from its leaves, bottom up."""
    level, index = node
    if level == 0:
        return leaves[index]
    return add(node_value((level - 1, 2 * index), leaves), node_value((level - 1, 2 * index + 1), leaves))


def root_value(nodes: Mapping[Node, np.ndarray], node: Node = ROOT) -> np.ndarray:
    """The root from node values that tile the leaves (each worker's `cover`); a node missing from
    `nodes` is its two children's sum. KeyError names a leaf nobody supplied."""
    if node in nodes:
        return nodes[node]
    level, index = node
    if level == 0:
        raise KeyError(f"micro-shard {index}'s partial was not supplied")
    return add(root_value(nodes, (level - 1, 2 * index)), root_value(nodes, (level - 1, 2 * index + 1)))


def add(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """left + right into a fresh array: the only operation of the tree."""
    return np.add(left, right)
