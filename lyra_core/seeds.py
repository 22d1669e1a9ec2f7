"""One derivation for every random stream a run draws from its spec's `seed`.

The spec's seed initialises the model; every other stream (data order, augmentation noise, each
process's noise) is `derive_seed(seed, purpose, *indices)`: independent streams for different
purposes, ranks or epochs, without the collisions of ad hoc arithmetic (`seed * 7919 + rank`).
"""

from __future__ import annotations

import hashlib
import json


def derive_seed(seed: int, purpose: str, *indices: int) -> int:
    """A 63-bit seed for `purpose` (and e.g. a rank or an epoch), derived from `seed`."""
    key = json.dumps([int(seed), purpose, *(int(i) for i in indices)]).encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # below 2**63: any torch or numpy seed
