"""The Store contract: every store implementation must pass these (imported by test_store.py)."""

from __future__ import annotations

import numpy as np
import pytest

from memesearch.errors import InvalidInputError, NotFoundError
from memesearch.store.models import Description, FileRecord, Filters


def add_meme(store, path: str, sha: str, *, folder_id=None, fmt="png", status="ok") -> int:
    return store.insert_file(FileRecord(path=path, folder_id=folder_id, size=10, mtime=1.0, sha256=sha,
                                        phash="0" * 16, width=10, height=10, format=fmt, frames=1, status=status))


class StoreContract:
    def test_folders_round_trip(self, store):
        folder = store.add_folder("/memes/a")
        assert store.add_folder("/memes/a").id == folder.id  # idempotent
        store.record_scan(folder.id, {"seen": 3})
        assert store.list_folders()[0].last_scan == {"seen": 3}

    def test_remove_folder_keeps_memes_as_missing(self, store):
        folder = store.add_folder("/memes/a")
        meme_id = add_meme(store, "/memes/a/x.png", "s1", folder_id=folder.id)
        store.remove_folder(folder.id)
        assert store.get_meme(meme_id).status == "missing"
        assert store.prune_missing() == 1
        with pytest.raises(NotFoundError):
            store.get_meme(meme_id)

    def test_texts_and_keyword_search(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        b = add_meme(store, "/m/b.png", "sb")
        store.set_ocr(a, "ONE DOES NOT SIMPLY WALK INTO MORDOR", "test-ocr")
        store.set_ocr(b, "WHEN THE CODE WORKS ON THE FIRST TRY", "test-ocr")
        assert store.keyword_search(["mordor"], [], 10) == [a]
        assert store.keyword_search([], ["first try"], 10) == [b]
        assert store.keyword_search(["nothing-like-this"], [], 10) == []

    def test_spaceless_ocr_matches_spaced_query(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        add_meme(store, "/m/b.png", "sb")
        store.set_ocr(a, "ONEDOESNOTSIMPLYWALKINTOMORDOR", "test-ocr")
        assert store.keyword_search(["does", "not", "simply"], [], 10)[0] == a

    def test_unicode_folding(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        b = add_meme(store, "/m/b.png", "sb")
        store.set_ocr(a, "ÜBERRASCHUNG! Café für alle", "test-ocr")
        store.set_ocr(b, "日本語のミーム テキスト", "test-ocr")
        assert store.keyword_search(["uberraschung"], [], 10) == [a]
        assert store.keyword_search(["CAFE"], [], 10) == [a]
        assert store.keyword_search(["ミーム"], [], 10) == [b]
        assert store.get_meme(a).ocr_text == "ÜBERRASCHUNG! Café für alle"  # stored as written

    def test_user_text_wins_ties(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        b = add_meme(store, "/m/b.png", "sb")
        store.set_ocr(a, "distracted boyfriend", "test-ocr")
        store.set_user_description(b, "distracted boyfriend")
        assert store.keyword_search(["distracted", "boyfriend"], [], 10)[0] == b

    def test_descriptions_per_model(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        store.set_description(a, Description(model_id="m1", text="a frog drinking tea", backend="onnx", created_at=1))
        store.set_description(a, Description(model_id="m2", text="kermit sipping tea", backend="torch", created_at=2))
        meme = store.get_meme(a)
        assert {d.model_id for d in meme.descriptions} == {"m1", "m2"}
        assert meme.description == "kermit sipping tea"
        assert store.keyword_search(["frog"], [], 10) == [a]

    def test_tags(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        store.add_tags(a, ["reaction", "  cats  "])
        store.create_tag("unused")
        assert store.get_meme(a).tags == ["cats", "reaction"]
        assert dict(store.list_tags()) == {"cats": 1, "reaction": 1, "unused": 0}
        store.remove_tags(a, ["cats"])
        assert store.get_meme(a).tags == ["reaction"]
        with pytest.raises(InvalidInputError):
            store.add_tags(a, [""])
        with pytest.raises(NotFoundError):
            store.add_tags(99999, ["x"])

    def test_filters(self, store):
        a = add_meme(store, "/memes/work/a.gif", "sa", fmt="gif")
        b = add_meme(store, "/memes/home/b.png", "sb")
        c = add_meme(store, "/memes/home/c.png", "sc", status="missing")
        store.add_tags(a, ["reaction"])
        store.set_user_description(b, "mine")
        assert store.filter_ids(Filters()) == {a, b}
        assert store.filter_ids(Filters(tags=["reaction"])) == {a}
        assert store.filter_ids(Filters(folders=["home"])) == {b}
        assert store.filter_ids(Filters(formats=["GIF"])) == {a}
        assert store.filter_ids(Filters(described=True)) == {b}
        assert store.filter_ids(Filters(described=False)) == {a}
        assert c in store.filter_ids(Filters(include_missing=True))

    def test_vectors_keep_model_and_hash(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        b = add_meme(store, "/m/b.png", "sb")
        version = store.vectors_version()
        store.put_vectors("model-x", [(a, "h1", np.ones(4, dtype=np.float32)), (b, "h2", np.zeros(4, dtype=np.float32))])
        store.put_vectors("model-y", [(a, "h9", np.full(8, 2, dtype=np.float32))])
        assert store.vectors_version() > version
        assert store.vector_hashes("model-x") == {a: "h1", b: "h2"}
        ids, matrix = store.load_vectors("model-x")
        assert list(ids) == [a, b] and matrix.shape == (2, 4)
        ids_y, matrix_y = store.load_vectors("model-y")
        assert list(ids_y) == [a] and matrix_y.shape == (1, 8)  # models never mix

    def test_duplicates_share_ocr(self, store):
        a = add_meme(store, "/m/a.png", "same")
        store.set_ocr(a, "shared text", "test-ocr")
        b = add_meme(store, "/m/copy.png", "same")
        meme_b = store.get_meme(b)
        assert meme_b.duplicate_of == a and meme_b.ocr_text == "shared text"
        assert b not in store.pending("ocr")

    def test_tag_names_are_validated(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        store.add_tags(a, ["  two   words  "])
        assert store.get_meme(a).tags == ["two words"]
        store.add_tags(a, ["x" * 50])
        for bad in ["", "   ", "x" * 51, "tab\there", "new\nline", "nul\x00"]:
            with pytest.raises(InvalidInputError):
                store.add_tags(a, [bad])
        with pytest.raises(InvalidInputError):
            store.rename_tag("two words", "y" * 51)
        assert sorted(store.get_meme(a).tags) == sorted(["two words", "x" * 50])

    def test_rename_tag(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        store.add_tags(a, ["classic"])
        store.set_tag_color("classic", "blue")
        assert store.rename_tag("CLASSIC", " vintage ") == "renamed"
        assert store.get_meme(a).tags == ["vintage"]
        assert [(t.name, t.count, t.color) for t in store.list_tag_details()] == [("vintage", 1, "blue")]
        assert store.keyword_search(["vintage"], [], 10) == [a]  # the search index follows the rename
        assert store.keyword_search(["classic"], [], 10) == []
        assert store.filter_ids(Filters(tags=["vintage"])) == {a}
        assert store.rename_tag("vintage", "Vintage") == "renamed"  # a change of case is a rename
        assert store.rename_tag("Vintage", "Vintage") == "unchanged"
        with pytest.raises(NotFoundError):
            store.rename_tag("nope", "other")

    def test_rename_onto_existing_tag_merges(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        b = add_meme(store, "/m/b.png", "sb")
        c = add_meme(store, "/m/c.png", "sc")
        store.add_tags(a, ["cat"])
        store.add_tags(b, ["cat", "cats"])
        store.add_tags(c, ["cats"])
        store.set_tag_color("cat", "red")
        assert store.rename_tag("cat", "CATS") == "merged"
        assert [(t.name, t.count, t.color) for t in store.list_tag_details()] == [("cats", 3, "red")]
        assert [store.get_meme(i).tags for i in (a, b, c)] == [["cats"], ["cats"], ["cats"]]
        assert store.filter_ids(Filters(tags=["cats"])) == {a, b, c}
        assert store.filter_ids(Filters(tags=["cat"])) == set()

    def test_delete_tag_and_colours(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        store.add_tags(a, ["doomed", "kept"])
        store.set_tag_color("kept", "GREEN")
        assert store.tag_colors() == {"kept": "green"}
        with pytest.raises(InvalidInputError):
            store.set_tag_color("kept", "#ff0000; background: url(x)")
        store.set_tag_color("kept", "")
        assert store.tag_colors() == {}
        assert store.delete_tag("Doomed") == 1
        assert store.get_meme(a).tags == ["kept"]
        assert store.keyword_search(["doomed"], [], 10) == []
        with pytest.raises(NotFoundError):
            store.delete_tag("doomed")
        with pytest.raises(NotFoundError):
            store.set_tag_color("doomed", "red")

    def test_unused_tags(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        store.add_tags(a, ["classic", "used"])
        store.create_tag("never")
        store.remove_tags(a, ["classic"])
        assert [t.name for t in store.list_tag_details(used_only=True)] == ["used"]
        assert {t.name: t.count for t in store.list_tag_details()} == {"classic": 0, "never": 0, "used": 1}
        assert store.delete_unused_tags() == ["classic", "never"]
        assert store.list_tags() == [("used", 1)]
        assert store.delete_unused_tags() == []

    def test_remove_memes(self, store):
        folder = store.add_folder("/m")
        a = add_meme(store, "/m/a.png", "sa", folder_id=folder.id)
        b = add_meme(store, "/m/b.png", "sb", folder_id=folder.id)
        dup = add_meme(store, "/m/a-copy.png", "sa", folder_id=folder.id)
        store.set_ocr(a, "one does not simply", "test-ocr")
        store.add_tags(a, ["gone"])
        store.put_vectors("m", [(a, "h", np.ones(4, dtype=np.float32)), (b, "h", np.ones(4, dtype=np.float32))])
        version = store.vectors_version()
        assert store.remove_memes([a, 99999, 2**70], exclude_paths=["/m/a.png"]) == [a]
        with pytest.raises(NotFoundError):
            store.get_meme(a)
        assert store.get_meme(dup).duplicate_of is None  # the copy stays, on its own
        assert store.keyword_search(["simply"], [], 10) == [dup]  # the copy shares the OCR text
        assert list(store.load_vectors("m")[0]) == [b]
        assert store.vectors_version() != version
        assert store.list_tags() == [("gone", 0)]
        assert store.excluded_paths() == {"/m/a.png"}
        assert set(store.files_in_folder(folder.id)) == {"/m/b.png", "/m/a-copy.png"}
        assert store.remove_memes([]) == []
        assert store.include_paths(["/m/a.png", "/m/other.png"]) == 1
        assert store.excluded_paths() == set()
        store.exclude_paths(["/m/x.png", "/m/x.png"])
        assert store.excluded_paths() == {"/m/x.png"}

    def test_pending_stages(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        add_meme(store, "/m/e.png", "se", status="error")
        assert store.pending("ocr") == [a]
        store.mark_stage(a, "ocr", "failed", "boom")
        assert store.pending("ocr") == [a]  # failed work is retried
        store.set_ocr(a, "x", "test-ocr")
        assert store.pending("ocr") == []

    def test_integrity(self, store):
        add_meme(store, "/m/a.png", "sa")
        assert store.integrity_ok()

    def test_missing_memes_are_not_results(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        b = add_meme(store, "/m/b.png", "sb")
        for meme_id in (a, b):
            store.set_ocr(meme_id, "grumpy cat says no", "test-ocr")
        store.put_vectors("mx", [(a, "h", np.ones(4, dtype=np.float32)), (b, "h", np.ones(4, dtype=np.float32))])
        store.set_status([b], "missing")
        assert store.keyword_search(["grumpy"], [], 10) == [a]
        assert store.keyword_search(["grumpycatsays"], [], 10) == [a]
        assert list(store.load_vectors("mx")[0]) == [a]
        store.set_status([b], "ok")
        assert sorted(store.keyword_search(["grumpy"], [], 10)) == [a, b]

    def test_control_characters_are_dropped_not_fatal(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        store.set_user_description(a, "nul\x00inside\x07 and\nnewline")
        store.set_ocr(a, "OCR\x00TEXT", "test-ocr")
        with pytest.raises(InvalidInputError, match="control characters"):  # a tag name is refused, not mangled
            store.add_tags(a, ["ta\x00g"])
        store.set_description(a, Description(model_id="m", text="de\x00scribed"))
        meme = store.get_meme(a)
        assert meme.user_description == "nulinside and\nnewline"
        assert (meme.ocr_text, meme.tags, meme.description) == ("OCRTEXT", [], "described")
