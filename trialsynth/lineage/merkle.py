"""RFC 6962 (Certificate Transparency) Merkle tree hashes over a partition's manifest hashes.

Leaf hash ``SHA-256(0x00 || leaf)``, node hash ``SHA-256(0x01 || left || right)``, and a tree of ``n``
leaves splits at the largest power of two below ``n``. Hand-written (about twenty lines) because no
installed package implements RFC 6962; the tests pin it to the published CT reference roots.

:func:`prefix_roots` yields the root of every prefix of the leaves in one pass (a "compact range" of
perfect subtrees, O(log n) per step), so every checkpoint of a chain is verified in O(n log n) total.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def prefix_roots(leaves: Iterable[bytes]) -> Iterator[bytes]:
    """The Merkle tree hash of ``leaves[:1]``, ``leaves[:2]``, ... in turn (raw leaf data in)."""
    # stack of (height, hash) of perfect subtrees, left to right, heights strictly decreasing
    stack: list[tuple[int, bytes]] = []
    for data in leaves:
        height, digest = 0, leaf_hash(data)
        while stack and stack[-1][0] == height:
            _, left = stack.pop()
            height, digest = height + 1, node_hash(left, digest)
        stack.append((height, digest))
        # RFC 6962 splits at the largest power of two, so the ragged right edge folds right to left
        root = stack[-1][1]
        for _, left in reversed(stack[:-1]):
            root = node_hash(left, root)
        yield root


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of the leaves (SHA-256 of nothing for no leaves)."""
    root = EMPTY_ROOT
    for root in prefix_roots(leaves):  # noqa: B007 (the last prefix is the whole tree)
        pass
    return root
