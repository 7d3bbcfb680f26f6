"""The whole app on PostgreSQL: scan a real folder, embed, search through Core (MEMESEARCH_DATABASE_URL)."""

from __future__ import annotations

from memesearch.app import Core
from memesearch.config import Settings
from memesearch.ml.fake import FakeEmbedder


def test_index_and_search_a_folder_on_postgres(tmp_path, postgres_url):
    from memesearch.library.indexing import run_index
    from memesearch.library.samples import render_sample_memes

    folder = tmp_path / "memes"
    render_sample_memes(folder, count=4, seed=3)
    core = Core(Settings(home=tmp_path / "data", database_url=postgres_url, ocr_enabled=False))
    core.__dict__["embedder"] = FakeEmbedder()  # the model boundary; store, scanner, pipeline, engine are real
    assert core.store.kind == "postgres"
    core.store.add_folder(str(folder))
    first = run_index(core)
    assert first["counts"]["total"] == 4
    ids = core.store.meme_ids()
    descriptions = ["distracted boyfriend looking back", "grumpy cat refuses", "doge very wow", "success kid fist pump"]
    for meme_id, text in zip(ids, descriptions):
        core.store.set_user_description(meme_id, text)
    core.pipeline.run_embed()
    assert core.store.counts()["vectors"] == 4

    engine = core.search_engine
    for mode in ("keyword", "vector", "hybrid"):
        assert engine.search("grumpy cat", mode=mode, limit=2).hits[0].id == ids[1], mode
    assert engine.search('"very wow"', mode="keyword").hits[0].id == ids[2]
    assert [hit.id for hit in engine.search("is:described kid", mode="hybrid").hits][0] == ids[3]
    again = run_index(core)  # a second index finds nothing to do
    assert again["folders"][0]["unchanged"] == 4 and again["embed"]["done"] == 0
    core.close()
