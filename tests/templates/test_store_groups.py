"""Template features and groups on both stores (the ``store`` fixture runs SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pytest

from memesearch.errors import InvalidInputError, NotFoundError
from memesearch.store.templates import TemplateStore
from memesearch.templates.record import FEATURES_VERSION, VECTOR_DIM, TemplateFeatures
from tests.store_contract import add_meme


def fake_features(seed: int) -> TemplateFeatures:
    rng = np.random.default_rng(seed)
    vector = rng.normal(size=VECTOR_DIM).astype(np.float32)
    return TemplateFeatures(vector=vector / np.linalg.norm(vector),
                            points=rng.uniform(0, 480, (20, 2)).astype(np.float32),
                            descriptors=rng.integers(0, 256, (20, 32), dtype=np.uint8))


@pytest.fixture
def templates(store):
    return TemplateStore(store)


def test_features_round_trip_and_pending(store, templates):
    a, b = add_meme(store, "/m/a.png", "sa"), add_meme(store, "/m/b.png", "sb")
    assert templates.pending() == [a, b]
    templates.put_features(a, fake_features(1))
    assert templates.pending() == [b] and not templates.needs_features(a) and templates.needs_features(b)
    loaded = templates.features_of([a])[a]
    assert loaded.descriptors.tobytes() == fake_features(1).descriptors.tobytes()
    ids, matrix = templates.vectors()
    assert ids.tolist() == [a] and matrix.shape == (1, VECTOR_DIM)
    assert np.allclose(matrix[0], fake_features(1).vector, atol=1e-3)  # stored as float16
    store.mark_stage(a, "templates", "failed", "boom")  # a failed stage is pending again
    assert a in templates.pending()


def test_an_older_features_version_is_pending(store, templates):
    a = add_meme(store, "/m/a.png", "sa")
    templates.put_features(a, fake_features(1))
    with store.write() as conn:
        conn.execute(templates._sql("UPDATE template_features SET version = ?"), (FEATURES_VERSION - 1,))
    assert templates.pending() == [a]


def test_groups_form_merge_and_keep_the_older_name(store, templates):
    memes = [add_meme(store, f"/m/{i}.png", f"s{i}") for i in range(5)]
    for index, meme in enumerate(memes):
        templates.put_features(meme, fake_features(index))
    templates.save_grouping(memes[:4], [{memes[0], memes[1]}, {memes[2], memes[3]}])
    first, second = templates.group_of(memes[0]), templates.group_of(memes[2])
    assert first != second and first is not None and templates.group_of(memes[4]) is None
    assert templates.ungrouped() == [memes[4]]
    templates.set_name(second, "  Distracted   boyfriend ")
    assert templates.group(second)["name"] == "Distracted boyfriend"
    # A new meme matching both joins them into the older group, which inherits the name.
    templates.save_grouping([memes[4]], [{memes[4], memes[1], memes[3]}])
    merged = templates.group_of(memes[4])
    assert merged == min(first, second)
    assert {templates.group_of(m) for m in memes} == {merged}
    listed = templates.groups()
    assert listed == [{"id": merged, "name": "Distracted boyfriend", "size": 5,
                       "members": [{"id": m, "path": f"/m/{i}.png"} for i, m in enumerate(memes)]}]
    assert templates.ungrouped() == []


def test_groups_count_only_present_memes(store, templates):
    a, b = add_meme(store, "/m/a.png", "sa"), add_meme(store, "/m/b.png", "sb")
    for meme in (a, b):
        templates.put_features(meme, fake_features(meme))
    templates.save_grouping([a, b], [{a, b}])
    store.set_status([b], "missing")
    assert templates.groups() == [] and templates.group_of(a) is None  # a group of one is no group
    store.set_status([b], "ok")
    assert templates.groups()[0]["size"] == 2


def test_new_features_take_a_meme_out_of_its_group(store, templates):
    a, b, c = (add_meme(store, f"/m/{n}.png", f"s{n}") for n in "abc")
    for meme in (a, b, c):
        templates.put_features(meme, fake_features(meme))
    templates.save_grouping([a, b, c], [{a, b, c}])
    templates.put_features(c, fake_features(99))  # the file changed
    assert templates.ungrouped() == [c] and templates.members(templates.group_of(a)) == [a, b]


def test_names_are_cleaned_and_bounded(store, templates):
    a, b = add_meme(store, "/m/a.png", "sa"), add_meme(store, "/m/b.png", "sb")
    for meme in (a, b):
        templates.put_features(meme, fake_features(meme))
    templates.save_grouping([a, b], [{a, b}])
    group = templates.group_of(a)
    templates.set_name(group, "drake\x1b[31m hotline")
    assert templates.group(group)["name"] == "drake[31m hotline"  # control characters dropped
    with pytest.raises(InvalidInputError):
        templates.set_name(group, "x" * 81)
    templates.set_name(group, "   ")
    assert templates.group(group)["name"] is None
    with pytest.raises(NotFoundError):
        templates.set_name(group + 1000, "nothing")


def test_ocr_boxes_are_shared_by_identical_files(store, templates):
    a = add_meme(store, "/m/a.png", "same")
    b = add_meme(store, "/m/b.png", "same")
    templates.put_ocr_boxes(a, [(0.1, 0.0, 0.9, 0.2)])
    assert templates.ocr_boxes(a) == [(0.1, 0.0, 0.9, 0.2)]
    assert templates.ocr_boxes(b) == [(0.1, 0.0, 0.9, 0.2)]
