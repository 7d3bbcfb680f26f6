"""Hostile request inputs get a 422 with a sentence naming the limit, never a 500 (issue 11)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from memesearch.config import Settings
from memesearch.search.engine import MAX_OFFSET, MAX_QUERY_CHARS
from memesearch.search.query import MAX_FILTERS
from memesearch.service.app import create_app as create_service
from tests.service.helpers import write_fake_models


def _error(response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    return response.json()["detail"]


def test_huge_offset_and_limit_name_the_limit(client):
    assert str(MAX_OFFSET) in _error(client.get("/api/search", params={"q": "cat", "offset": 4611686018427387903}))
    assert str(MAX_OFFSET) in _error(client.get("/api/search", params={"q": "cat", "offset": MAX_OFFSET + 1}))
    assert "1000" in _error(client.get("/api/search", params={"q": "cat", "limit": 10**30}))
    assert client.get("/api/search", params={"q": "cat", "offset": MAX_OFFSET}).status_code == 200
    # The page takes the same bound (an HTML error page, not a 500).
    assert client.get("/", params={"q": "cat", "offset": 4611686018427387903}, headers={"accept": "text/html"}).status_code == 422


def test_too_many_filters_name_the_limit(client):
    many = " ".join(f"tag:t{i}" for i in range(999))
    assert f"at most {MAX_FILTERS}" in _error(client.get("/api/search", params={"q": many}))
    assert str(MAX_QUERY_CHARS) in _error(client.get("/api/search", params={"q": "x" * (MAX_QUERY_CHARS + 1)}))
    assert str(MAX_FILTERS // 2) in _error(client.get("/api/search", params={"tag": [f"t{i}" for i in range(999)]}))
    assert str(MAX_FILTERS // 2) in _error(client.get("/api/search", params={"folder": ["f"] * 999}))
    # Through the page (query text is not bounded by the API parameter there): the engine's limit.
    page = client.get("/", params={"q": " ".join(f"folder:f{i}" for i in range(150))}, headers={"accept": "text/html"})
    assert page.status_code == 422 and f"at most {MAX_FILTERS}" in page.text


def test_lone_surrogates_in_json_bodies_are_422(client, web_core):
    meme_id = web_core.store.meme_ids()[0]
    before = web_core.store.get_meme(meme_id)
    for body in ('{"user_description": "bad \\ud800 text"}', '{"tags": ["\\udfff"]}', '{"\\ud83d": 1}'):
        response = client.patch(f"/api/memes/{meme_id}", content=body, headers={"content-type": "application/json"})
        assert "invalid Unicode" in _error(response)
    after = web_core.store.get_meme(meme_id)
    assert (after.user_description, after.tags) == (before.user_description, before.tags)
    # A proper surrogate pair (an emoji) is fine.
    ok = client.patch(f"/api/memes/{meme_id}", content='{"user_description": "\\ud83d\\ude00 yes"}',
                      headers={"content-type": "application/json"})
    assert ok.status_code == 200 and ok.json()["user_description"] == "\U0001F600 yes"


def test_invalid_utf8_in_the_query_string_is_422(client):
    assert "not valid UTF-8" in _error(client.get("/api/search?q=%ED%A0%80"))
    assert "not valid UTF-8" in _error(client.get("/api/search?q=caf%E9"))
    assert client.get("/api/search?q=caf%C3%A9").status_code == 200


def test_ml_service_refuses_invalid_unicode(tmp_path):
    home = tmp_path / "data"
    write_fake_models(home, delay=0.0)
    with TestClient(create_service(Settings(home=home))) as service:
        response = service.post("/v1/embed", content='{"texts": ["ok", "\\ud800"]}', headers={"content-type": "application/json"})
        assert response.status_code == 422 and "surrogate" in response.text
        response = service.post("/v1/embed", content=b'{"texts": ["\xff\xfe"]}', headers={"content-type": "application/json"})
        assert response.status_code == 422 and "UTF-8" in response.json()["detail"]
        assert service.get("/v1/models?x=%ED%A0%80").status_code == 422
        assert service.get("/healthz").status_code == 200


def test_an_oversized_upload_names_its_real_size_and_the_limit(web_template, tmp_path):
    from memesearch.web import create_app
    from tests.web.conftest import copy_library, csrf_client

    core = copy_library(web_template, tmp_path / "data", max_upload_mb=0.1)
    with csrf_client(create_app(core=core)) as client:
        response = client.post("/api/uploads", files={"files": ("big.png", b"\x89PNG" + b"0" * 270_000, "image/png")})
    core.close()
    assert response.status_code == 422, response.text  # nothing in the request was saved
    assert response.json()["files"][0]["error"] == "file is 0.3 MB, over the 0.1 MB upload limit"
