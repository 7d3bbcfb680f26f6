"""Pairwise precision and recall of grouping on a seeded subset of the synthetic template set
(the full set's figures are in docs/BENCHMARKS.md, from bench/bench_templates.py)."""

from __future__ import annotations

import itertools

import pytest
from PIL import Image

from memesearch.templates.grouping import UnionFind, VectorIndex, find_partners
from memesearch.templates.synthetic import render_template_set


@pytest.fixture(scope="module")
def seeded_set(tmp_path_factory, features_of):
    memes = render_template_set(tmp_path_factory.mktemp("set"), templates=8, variants=4, distractors=12, seed=3)
    return memes, {i: features_of(Image.open(m.path)) for i, m in enumerate(memes)}


# The library-scale path too: candidates from the int8 scan, verifications in two threads.
@pytest.mark.parametrize(("workers", "quantized"), [(1, False), (2, True)])
def test_grouping_precision_and_recall_on_a_seeded_subset(seeded_set, workers, quantized):
    memes, features = seeded_set
    index = VectorIndex()
    index.quantize_from = 0 if quantized else index.quantize_from
    for i, f in features.items():
        index.add(i, f.vector)
    assert index.quantized == quantized
    components = UnionFind()
    find_partners(list(features.items()), index, lambda ids: {i: features[i] for i in ids}, components,
                  workers=workers)

    tp = fp = fn = 0
    for i, j in itertools.combinations(range(len(memes)), 2):
        truth = memes[i].template is not None and memes[i].template == memes[j].template
        found = components.find(i) == components.find(j)
        tp, fp, fn = tp + (truth and found), fp + (found and not truth), fn + (truth and not found)
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    assert tp + fn == 8 * 10  # 8 templates x C(5, 2) pairs: the set is what we think it is
    assert precision >= 0.95, (precision, recall)
    assert recall >= 0.90, (precision, recall)
