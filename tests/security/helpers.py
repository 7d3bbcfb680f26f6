"""A locked-down web app with one meme, and browser-like test clients for it."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from memesearch.app import Core
from memesearch.web import create_app
from tests.conftest import make_core
from tests.security.conftest import API_TOKEN, PASSWORD


class LockedLibrary:
    """A data dir with one scanned meme; ``start()`` builds the app the way a (re)started server would."""

    def __init__(self, root: Path, models_dir: Path) -> None:
        from memesearch.library.scanner import scan_folder

        self.home, self.models_dir = root / "data", models_dir
        folder = root / "memes"
        folder.mkdir()
        Image.new("RGB", (24, 24), (200, 40, 40)).save(folder / "m.png")
        self.core: Core | None = None
        core = self._core(password=PASSWORD)
        scan_folder(core.store, core.store.add_folder(str(folder)), core.settings)
        self.meme_id = core.store.meme_ids()[0]

    def _core(self, **overrides) -> Core:
        self.close()
        self.core = make_core(self.home, self.models_dir, threads=1, api_token=API_TOKEN, **overrides)
        return self.core

    def start(self, password: str = PASSWORD, **overrides):
        """A fresh app (new process state) over the same data dir."""
        return create_app(core=self._core(password=password, **overrides))

    def description(self) -> str:
        assert self.core is not None
        return self.core.store.get_meme(self.meme_id).user_description

    def close(self) -> None:
        if self.core is not None:
            self.core.close()
            self.core = None


def browser(app, ip: str = "198.51.100.7", base_url: str = "http://testserver") -> TestClient:
    """A client from address ``ip`` that has opened the login page (so it holds a session id)."""
    client = TestClient(app, base_url=base_url, raise_server_exceptions=False, follow_redirects=False,
                        client=(ip, 40000))
    assert client.get("/login").status_code == 200
    return client


def log_in(client: TestClient, password: str = PASSWORD, **headers: str):
    return client.post("/login", data={"password": password, "csrf_token": client.cookies["ms_csrf"]},
                       headers=headers)


def edit(client: TestClient, meme_id: int, text: str, **headers: str):
    """A state-changing request the way the pages send it: session cookie + X-CSRF-Token."""
    headers = {"X-CSRF-Token": client.cookies.get("ms_csrf") or ""} | headers
    return client.patch(f"/api/memes/{meme_id}", json={"user_description": text}, headers=headers)
