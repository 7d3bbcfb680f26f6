"""Which memes look like a perceptual hash: the meme page's near duplicates and search by
image's hash matches. The library's hashes are one numpy array, kept between lookups until
a meme's hash or status changes (``store.phashes_signature()``)."""

from __future__ import annotations

import threading
import weakref

import numpy as np

from memesearch.library.hashing import hamming_many, hash_array, is_hash

_hash_indexes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # store -> (signature, ids, hashes)
_hash_lock = threading.Lock()


def close_hashes(store, phash: str, max_bits: int) -> dict[int, int]:
    """meme id -> Hamming distance of every present meme within ``max_bits`` of ``phash``
    (16 hex digits, as ``dhash`` writes), the meme with that hash itself included."""
    signature = store.phashes_signature()
    with _hash_lock:
        cached = _hash_indexes.get(store)
        if cached is None or cached[0] != signature:
            rows = store.phashes()
            try:
                hashes = hash_array([value for _, value in rows])
            except ValueError:  # a malformed stored hash (not written by dhash) is never close
                rows = [(meme_id, value) for meme_id, value in rows if is_hash(value)]
                hashes = hash_array([value for _, value in rows])
            cached = _hash_indexes[store] = (signature, np.array([meme_id for meme_id, _ in rows], dtype=np.int64), hashes)
    _, ids, hashes = cached
    distances = hamming_many(phash, hashes)
    near = np.flatnonzero(distances <= max_bits)
    return {int(ids[i]): int(distances[i]) for i in near}
