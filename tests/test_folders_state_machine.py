"""Folders as a set of roots, checked by a Hypothesis state machine.

Random sequences of add / remove (folder), index, upload, create / rename / delete (file),
prune, tag and describe run on a real SQLite library in a temp dir with the real scanner,
store and prune; only the embedding model is the deterministic fake (OCR off). Roots nest
(``lib`` and ``lib/sub``), the data dir sits inside ``lib`` and its uploads folder is a root
of its own once something is uploaded. After every step:

* no operation raised;
* no tag or description the user set is lost, except by ``prune`` of a meme whose file is
  truly gone;
* a meme is present only while a registered folder reaches it, and belongs to the innermost
  such folder; the data dir's own files are never memes;
* after ``index``, every image under a root is exactly one present meme.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from PIL import Image

from memesearch.app import Core
from memesearch.library.folders import validate_folder
from memesearch.library.indexing import run_index
from memesearch.config import Settings
from memesearch.library.data_dir import is_internal
from memesearch.library.prune import prune
from memesearch.library.uploads import save_upload
from memesearch.ml.fake import FakeEmbedder
from memesearch.store.roots import innermost_root
from memesearch.web.routes.api_library import uploads_folder

PICK = st.integers(min_value=0, max_value=1_000)  # an index into a list that changes as the test runs
ROOT = st.sampled_from(range(5))  # into FolderLibrary.roots
PLACE = st.sampled_from(range(6))  # into FolderLibrary.places


def _image_bytes(number: int) -> bytes:
    """Distinct bytes for every number (no accidental duplicates: each file is its own meme)."""
    from io import BytesIO

    out = BytesIO()
    Image.new("RGB", (12, 10), ((number * 37) % 256, (number * 11) % 256, number // 256)).save(out, "PNG")
    return out.getvalue()


class FolderLibrary(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.base = Path(tempfile.mkdtemp(prefix="folders-sm-")).resolve()
        lib = self.base / "lib"
        self.home = lib / "data"
        self.uploads = self.home / "uploads"
        self.roots = [lib, lib / "sub", self.base / "other", self.home, self.uploads]
        self.places = [lib, lib / "sub", lib / "sub" / "deeper", self.base / "other", self.base / "outside", self.uploads]
        for place in self.places:
            place.mkdir(parents=True, exist_ok=True)
        # Files of the app's own that look like memes: never indexed even though `lib` reaches them.
        (self.home / "thumbnails").mkdir()
        (self.home / "thumbnails" / "1.png").write_bytes(_image_bytes(999))
        (self.home / "stray.png").write_bytes(_image_bytes(998))
        self.core = Core(Settings(home=self.home, ocr_enabled=False, threads=1))
        self.core.__dict__["embedder"] = FakeEmbedder()  # the model boundary; all above is real
        self.store = self.core.store
        self.files: list[Path] = []  # the user's meme files on disk
        self.counter = 0
        self.notes: dict[int, tuple[set[str], str]] = {}  # meme id -> tags and description the user set

    def teardown(self) -> None:
        self.core.close()
        shutil.rmtree(self.base, ignore_errors=True)

    def _new_bytes(self) -> bytes:
        self.counter += 1
        return _image_bytes(self.counter)

    # -- folders ---------------------------------------------------------------------
    @rule(root=ROOT)
    def add_folder(self, root: int) -> None:
        self.store.add_folder(str(validate_folder(self.roots[root], self.home)))

    @precondition(lambda self: self.store.list_folders())
    @rule(pick=PICK)
    def remove_folder(self, pick: int) -> None:
        folders = self.store.list_folders()
        self.store.remove_folder(folders[pick % len(folders)].id)

    @rule()
    def index(self) -> None:
        if not self.store.list_folders():
            return
        run_index(self.core)
        expected = {str(path) for path in self.files if innermost_root(str(path), self.store.list_folders())}
        present = {meme.path for meme in self.store.get_memes(self.store.meme_ids())}
        assert present == expected
        assert self.store.counts()["ok"] == len(expected)

    # -- files -----------------------------------------------------------------------
    @rule(pick=PICK)
    def upload(self, pick: int) -> None:
        saved = save_upload(self.core.settings, f"up{pick}.png", self._new_bytes())
        assert saved.error is None
        uploads_folder(self.core)  # what the web app does on every upload
        self.files.append(saved.path)

    @rule(place=PLACE)
    def create_file(self, place: int) -> None:
        path = self.places[place] / f"m{self.counter + 1}.png"
        path.write_bytes(self._new_bytes())
        self.files.append(path)

    @precondition(lambda self: self.files)
    @rule(pick=PICK, where=PLACE)
    def rename_file(self, pick: int, where: int) -> None:
        old = self.files.pop(pick % len(self.files))
        self.counter += 1
        new = self.places[where] / f"r{self.counter}.png"
        os.replace(old, new)
        self.files.append(new)

    @precondition(lambda self: self.files)
    @rule(pick=PICK)
    def delete_file(self, pick: int) -> None:
        self.files.pop(pick % len(self.files)).unlink()

    @rule()
    def prune(self) -> None:
        paths = {meme.id: meme.path for meme in self.store.get_memes(list(self.notes))}
        prune(self.store, self.home)
        kept = set(self.store.meme_ids(status=None))
        for meme_id, path in paths.items():
            if meme_id not in kept:  # only a meme whose file is truly gone may lose what the user set
                assert not os.path.lexists(path), f"prune forgot {path}, which still exists"
                self.notes.pop(meme_id)

    # -- what the user writes --------------------------------------------------------
    @precondition(lambda self: self.store.meme_ids(status=None))
    @rule(pick=PICK)
    def tag(self, pick: int) -> None:
        ids = self.store.meme_ids(status=None)
        meme_id = ids[pick % len(ids)]
        name = f"t{pick}"
        self.store.add_tags(meme_id, [name])
        tags, text = self.notes.get(meme_id, (set(), ""))
        self.notes[meme_id] = (tags | {name}, text)

    @precondition(lambda self: self.store.meme_ids(status=None))
    @rule(pick=PICK)
    def describe(self, pick: int) -> None:
        ids = self.store.meme_ids(status=None)
        meme_id = ids[pick % len(ids)]
        text = f"my words {pick}"
        self.store.set_user_description(meme_id, text)
        tags, _ = self.notes.get(meme_id, (set(), ""))
        self.notes[meme_id] = (tags, text)

    # -- invariants ------------------------------------------------------------------
    @invariant()
    def user_data_is_never_lost(self) -> None:
        memes = {meme.id: meme for meme in self.store.get_memes(list(self.notes))}
        for meme_id, (tags, text) in self.notes.items():
            assert meme_id in memes, f"meme {meme_id} with user data was deleted"
            assert tags <= set(memes[meme_id].tags) and memes[meme_id].user_description == text

    @invariant()
    def memes_follow_the_roots(self) -> None:
        folders = self.store.list_folders()
        for meme in self.store.get_memes(self.store.meme_ids(status=None)):
            assert not is_internal(meme.path, self.home), f"the data dir's own file {meme.path} is a meme"
            owner = innermost_root(meme.path, folders)
            if owner is None:
                assert (meme.status, meme.folder_id) == ("missing", None), f"{meme.path} shown without a folder"
            else:
                assert meme.folder_id == owner.id, f"{meme.path} belongs to {owner.path}"


FolderLibrary.TestCase.settings = settings(
    max_examples=int(os.environ.get("SM_EXAMPLES", 40)), stateful_step_count=30, deadline=None, derandomize=not os.environ.get("SM_RANDOM"), database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFolderLibrary = FolderLibrary.TestCase


def _check(machine: FolderLibrary) -> None:
    machine.user_data_is_never_lost()
    machine.memes_follow_the_roots()


@pytest.mark.parametrize("steps", [
    # remove + add again (seen on main: UNIQUE constraint failed, then prune lost the tag)
    [("add_folder", 0), ("create_file", 0), ("index",), ("tag", 0), ("describe", 0), ("remove_folder", 0),
     ("prune",), ("index",), ("add_folder", 0), ("index",), ("prune",)],
    # a root and its subfolder, both orders, then the subfolder removed and the root removed
    [("add_folder", 0), ("add_folder", 1), ("create_file", 1), ("create_file", 2), ("index",), ("tag", 0),
     ("remove_folder", 1), ("index",), ("remove_folder", 0), ("prune",), ("add_folder", 1), ("index",)],
    [("add_folder", 1), ("create_file", 2), ("index",), ("tag", 0), ("add_folder", 0), ("index",), ("index",)],
    # the data dir inside a root: the first upload registers uploads/; the data dir itself as a root
    [("add_folder", 0), ("index",), ("upload", 0), ("index",), ("tag", 0), ("add_folder", 3),
     ("create_file", 5), ("index",), ("remove_folder", 2), ("index",)],
    # renamed out of the library and back, deleted, pruned
    [("add_folder", 2), ("create_file", 3), ("index",), ("tag", 0), ("rename_file", 0, 4), ("index",),
     ("prune",), ("rename_file", 0, 3), ("index",), ("delete_file", 0), ("index",), ("prune",)],
])
def test_known_sequences(steps):
    """The reproductions of issue 11 as fixed sequences (the random search may not draw them)."""
    machine = FolderLibrary()
    try:
        _check(machine)
        for name, *args in steps:
            getattr(machine, name)(*args)
            _check(machine)
    finally:
        machine.teardown()
