"""Perceptual hashes compared many at once: the numpy scan equals the one-by-one Hamming distance."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from memesearch.library.hashing import dhash, hamming, hamming_many, hash_array, is_hash


def test_hamming_many_equals_hamming_for_every_hash():
    rng = np.random.default_rng(3)
    hashes = [f"{int(value):016x}" for value in rng.integers(0, 2**63, 500, dtype=np.int64)]
    hashes += ["0" * 16, "f" * 16, "8000000000000001", "FFFF0000ffff0000"]  # extremes, top bit, upper case
    array = hash_array(hashes)
    for query in (hashes[0], "0" * 16, "f" * 16, dhash(Image.new("RGB", (40, 30), (200, 10, 10)))):
        assert hamming_many(query, array).tolist() == [hamming(query, value) for value in hashes]
    assert hamming_many("0" * 16, hash_array([])).tolist() == []


def test_the_byte_table_of_numpy_1_counts_alike(monkeypatch):
    array = hash_array(["0" * 16, "f" * 16, "8000000000000001", "0123456789abcdef"])
    expected = hamming_many("00000000ffffffff", array).tolist()
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert hamming_many("00000000ffffffff", array).tolist() == expected == [32, 32, 32, 24]


@pytest.mark.parametrize("bad", ["abc", "zz" * 8, "0" * 17, ""])
def test_a_malformed_hash_is_refused_and_named(bad):
    assert not is_hash(bad)
    with pytest.raises(ValueError):
        hash_array(["0" * 16, bad])
