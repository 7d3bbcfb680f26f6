"""Text queries ranked by image-text similarity, fused into hybrid; similar memes; search by image.

The tiny random CLIP knows no real concepts, so each test reads the model's own cosines and
sets the relevance floor (a models.yml override, as a user would) around them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from memesearch.library.decode import load_rgb
from memesearch.search.image_neighbours import image_neighbours
from tests.visual.conftest import floor_override, indexed_core, visual_core

QUERY = "zqxv blorp"  # no meme has these words: only pictures can answer


def _indexed(tmp_path: Path, clip_models, database_url: str = "", *, floor: float | None = None):
    return indexed_core(tmp_path, clip_models, database_url, models_yml=floor_override(floor) if floor is not None else "")


def _cosines(core, text: str) -> dict[int, float]:
    """The model's own text-to-picture cosines, computed here from the files."""
    query = core.visual.embed_texts([text])[0]
    memes = core.store.get_memes(core.store.meme_ids())
    pictures = core.visual.embed_images([load_rgb(Path(m.path), 64.0) for m in memes])
    return {meme.id: float(vector @ query) for meme, vector in zip(memes, pictures)}


def test_hybrid_finds_the_meme_whose_picture_matches_and_only_above_the_floor(tmp_path, clip_models, database_url):
    probe = _indexed(tmp_path / "probe", clip_models)
    cosines = {Path(probe.store.get_meme(i).path).name: c for i, c in _cosines(probe, QUERY).items()}
    probe.close()
    ranked = sorted(cosines, key=cosines.get, reverse=True)
    floor = (cosines[ranked[1]] + cosines[ranked[2]]) / 2  # the two best pictures pass, the rest do not

    core = _indexed(tmp_path / "lib", clip_models, database_url, floor=floor)
    by_path = {Path(m.path).name: m.id for m in core.store.get_memes(core.store.meme_ids())}
    expected = [by_path[name] for name in ranked[:2]]

    assert core.search_engine.search(QUERY, mode="keyword").hits == []
    result = core.search_engine.search(QUERY, mode="hybrid")
    assert [hit.id for hit in result.hits] == expected and result.total == 2
    # Fusion: a meme that the words match joins the pictures' hits.
    worded = by_path[sorted(by_path)[-1]]
    core.store.set_user_description(worded, "blorp")
    core.pipeline.run_embed()
    fused = [hit.id for hit in core.search_engine.search(QUERY, mode="hybrid").hits]
    assert worded in fused and set(expected) <= set(fused)
    core.close()


def test_a_query_no_picture_is_about_finds_nothing_from_the_image_side(tmp_path, clip_models):
    probe = _indexed(tmp_path / "probe", clip_models)
    best = max(_cosines(probe, QUERY).values())
    probe.close()
    core = _indexed(tmp_path / "lib", clip_models, floor=min(best + 0.05, 1.0))
    result = core.search_engine.search(QUERY, mode="hybrid")
    assert result.hits == [] and result.total == 0
    assert core.search_engine.visual.rank(QUERY, 200, None) == ([], True)
    core.close()


def test_similar_memes_use_image_vectors_before_text_vectors(tmp_path, clip_models):
    core = _indexed(tmp_path, clip_models)
    ids, matrix = core.store.load_vectors(core.visual.space)
    target = int(ids[0])
    order = np.argsort(-(matrix @ matrix[0]), kind="stable")
    expected = [int(ids[i]) for i in order if int(ids[i]) != target][:3]
    similar = core.search_engine.similar(target, limit=3)
    assert [meme_id for meme_id, _ in similar] == expected
    assert abs(similar[0][1] - float(matrix[order[1]] @ matrix[0])) < 1e-5  # image cosines, not text ones
    core.close()


def test_image_neighbours_finds_the_meme_a_picture_came_from(tmp_path, clip_models, database_url):
    core = _indexed(tmp_path, clip_models, database_url)
    meme = core.store.get_memes(core.store.meme_ids())[2]
    neighbours = image_neighbours(core, load_rgb(Path(meme.path), 64.0), 3)
    assert len(neighbours) == 3 and neighbours[0][0] == meme.id and neighbours[0][1] >= 0.9999
    assert [score for _, score in neighbours] == sorted((score for _, score in neighbours), reverse=True)
    core.close()
    bare = visual_core(tmp_path / "bare")
    assert image_neighbours(bare, load_rgb(Path(meme.path), 64.0), 3) is None  # no image model installed
    bare.close()


def test_a_broken_model_leaves_search_to_words(tmp_path, clip_models):
    core = _indexed(tmp_path, clip_models)
    core.store.set_user_description(core.store.meme_ids()[0], "blorp")
    core.pipeline.run_embed()
    textual = core.settings.models_dir / "clip-vit-b-32" / "textual"
    for graph in textual.glob("*.onnx"):
        graph.write_bytes(b"truncated download")
    for graph in (core.settings.models_dir / "clip-vit-b-32" / "visual").glob("*.onnx"):
        graph.write_bytes(b"truncated download")
    fresh = visual_core(core.settings.home)
    hits = fresh.search_engine.search("blorp", mode="hybrid").hits
    assert [hit.id for hit in hits] == [core.store.meme_ids()[0]]
    meme = core.store.get_meme(core.store.meme_ids()[0])
    assert image_neighbours(fresh, load_rgb(Path(meme.path), 64.0), 3) is None  # search by image goes on without it
    core.close()
    fresh.close()
