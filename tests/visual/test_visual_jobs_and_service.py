"""Image vectors through background runs and through the ML service (bytes only, never paths)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from memesearch.library.indexing import run_index
from memesearch.config import Settings
from memesearch.jobs.worker import start_in_process
from memesearch.library.decode import load_rgb
from memesearch.library.samples import render_sample_memes
from memesearch.ml.image_text import load_image_text_embedder
from memesearch.ml.registry import get_spec
from memesearch.service.app import create_app
from tests.service.helpers import free_port, start_service, stop, wait_for
from tests.visual.conftest import MODEL_ID, install_clip, visual_core


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_index_run_in_jobs_adds_image_vectors_also_to_memes_indexed_before(tmp_path, clip_models):
    folder = tmp_path / "memes"
    render_sample_memes(folder, count=4, seed=3)
    home = tmp_path / "data"
    before = visual_core(home)  # no visual model yet: words only
    before.store.add_folder(str(folder))
    run_index(before)
    assert before.visual is None
    before.close()

    install_clip(home, clip_models)
    core = visual_core(home)
    worker = start_in_process(core, concurrency=2)
    try:
        run = core.jobs.start("index")
        run = wait_for(lambda: (lambda r: None if r.active else r)(core.jobs.get(run.id)), timeout=120)
        assert run.state == "done" and run.total == 4  # only the image vectors were left to do
        ids = core.store.meme_ids()
        memes = core.store.get_memes(ids)
        assert core.store.vector_hashes(core.visual.space) == {m.id: m.sha256 for m in memes}
        again = core.jobs.start("index")
        again = wait_for(lambda: (lambda r: None if r.active else r)(core.jobs.get(again.id)), timeout=120)
        assert again.state == "done" and again.total == 0
    finally:
        worker.stop()
        core.close()


@pytest.fixture
def service_home(tmp_path, clip_models) -> Path:
    home = tmp_path / "service"
    install_clip(home, clip_models)
    return home


def test_embed_image_takes_bytes_and_answers_like_the_model_in_process(service_home):
    settings = Settings(home=service_home, threads=1)
    local = load_image_text_embedder(get_spec(MODEL_ID), settings)
    picture = Image.new("RGB", (80, 60), (30, 160, 90))
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/embed-image", files={"image": ("m.png", _png(picture), "image/png")})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_id"] == MODEL_ID and body["count"] == 1
        from memesearch.ml.remote import decode_vectors

        assert float(decode_vectors(body)[0] @ local.embed_images([picture])[0]) >= 0.9999
        texts = client.post("/v1/embed", json={"texts": ["a cat"], "model": MODEL_ID, "mode": "query"})
        assert texts.status_code == 200, texts.text
        assert float(decode_vectors(texts.json())[0] @ local.embed_query("a cat")) >= 0.9999

        # Paths are never read: a path as the upload is just bytes that are not an image.
        for data in (b"/etc/passwd", str(Path(__file__)).encode(), b"\x89PNG\r\n\x1a\n garbage"):
            refused = client.post("/v1/embed-image", files={"image": ("m.png", data, "image/png")})
            assert refused.status_code == 422 and "image" in refused.text.lower()
        as_json = client.post("/v1/embed-image", json={"path": "/etc/passwd"})
        assert as_json.status_code == 422
        loaded = client.get("/v1/models").json()
        assert {"kind": "image_text", "name": MODEL_ID} in [{k: m[k] for k in ("kind", "name")} for m in loaded["loaded"]]
        assert loaded["default_visual_model"] == MODEL_ID
        unknown = client.post("/v1/embed-image", files={"image": ("m.png", _png(picture), "image/png")},
                              data={"model": "smolvlm-256m"})
        assert unknown.status_code == 404 and "not an image-text" in unknown.text


def test_the_remote_backend_embeds_images_and_queries_through_the_service(tmp_path, service_home):
    port = free_port()
    proc = start_service(service_home, port, tmp_path / "service.log")
    try:
        folder = tmp_path / "memes"
        render_sample_memes(folder, count=3, seed=4)
        core = visual_core(tmp_path / "client", ml_urls=[f"http://127.0.0.1:{port}"])
        assert core.visual is not None  # the service owns the models
        core.store.add_folder(str(folder))
        summary = run_index(core)
        assert summary["image_embed"]["done"] == 3, summary["image_embed"]
        local = load_image_text_embedder(get_spec(MODEL_ID), Settings(home=service_home, threads=1))
        ids, matrix = core.store.load_vectors(core.visual.space)
        paths = {m.id: m.path for m in core.store.get_memes([int(i) for i in ids])}
        expected = local.embed_images([load_rgb(Path(paths[int(i)]), 64.0) for i in ids])
        assert np.sum(matrix * expected, axis=1).min() >= 0.9999
        query = core.visual.embed_texts(["a cat"])[0]
        assert float(query @ local.embed_query("a cat")) >= 0.9999
        core.close()
    finally:
        stop(proc)


def test_preloading_names_a_visual_model_by_its_id():
    from memesearch.service.pool import classify_name

    assert classify_name(MODEL_ID) == ("image_text", MODEL_ID)
    assert classify_name("smolvlm-256m") == ("caption", "smolvlm-256m")
