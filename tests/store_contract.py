"""The Store contract: every store implementation must pass these (imported by test_store.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from memesearch.errors import InvalidInputError, NotFoundError
from memesearch.store.models import Description, FileRecord, Filters
from memesearch.store.transfer import export_library, import_library


def add_meme(store, path: str, sha: str, *, folder_id=None, fmt="png", status="ok") -> int:
    return store.insert_file(FileRecord(path=path, folder_id=folder_id, size=10, mtime=1.0, sha256=sha,
                                        phash="0" * 16, width=10, height=10, format=fmt, frames=1, status=status))


class StoreContract:
    def test_folders_round_trip(self, store):
        folder = store.add_folder("/memes/a")
        assert store.add_folder("/memes/a").id == folder.id  # idempotent
        store.record_scan(folder.id, {"seen": 3})
        assert store.list_folders()[0].last_scan == {"seen": 3}

    def test_remove_folder_keeps_memes_and_their_user_data(self, store):
        folder = store.add_folder("/memes/a")
        meme_id = add_meme(store, "/memes/a/x.png", "s1", folder_id=folder.id)
        store.add_tags(meme_id, ["keep"])
        store.remove_folder(folder.id)
        meme = store.get_meme(meme_id)
        assert (meme.status, meme.folder_id, meme.tags) == ("missing", None, ["keep"])
        assert store.meme_ids() == [] and store.counts()["ok"] == 0
        assert [row["id"] for row in store.missing_files()] == [meme_id]
        again = store.add_folder("/memes/a")  # re-adding claims it back (the scan makes it present)
        assert store.get_meme(meme_id).folder_id == again.id
        assert store.delete_memes([meme_id, 10**6]) == 1
        with pytest.raises(NotFoundError):
            store.get_meme(meme_id)

    def test_nested_folders_share_memes_by_path(self, store):
        outer = store.add_folder("/memes")
        deep = add_meme(store, "/memes/sub/x.png", "s1", folder_id=outer.id)
        top = add_meme(store, "/memes/y.png", "s2", folder_id=outer.id)
        other = add_meme(store, "/memes-other/z.png", "s3")  # a sibling whose name starts the same
        inner = store.add_folder("/memes/sub")
        assert store.get_meme(deep).folder_id == inner.id and store.get_meme(top).folder_id == outer.id
        assert store.folder_meme_counts() == {outer.id: 1, inner.id: 1}
        assert set(store.files_under("/memes")) == {"/memes/sub/x.png", "/memes/y.png"}
        assert set(store.files_under("/memes/sub")) == {"/memes/sub/x.png"}
        assert set(store.files_under("/memes/s_b%")) == set() and len(store.files_under("/")) == 3
        row = store.files_under("/memes/sub")["/memes/sub/x.png"]
        assert (row["id"], row["folder_id"], row["status"], row["sha256"]) == (deep, inner.id, "ok", "s1")
        store.remove_folder(inner.id)  # the outer root still reaches it: it stays present
        assert store.get_meme(deep).folder_id == outer.id and store.get_meme(deep).status == "ok"
        store.remove_folder(outer.id)
        assert {store.get_meme(i).status for i in (deep, top)} == {"missing"}
        assert store.get_meme(other).status == "ok"
        store.set_folder([deep], store.add_folder("/memes/sub").id)
        assert store.get_meme(deep).folder_id == store.folder_by_path("/memes/sub").id

    def test_texts_and_keyword_search(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        b = add_meme(store, "/m/b.png", "sb")
        store.set_ocr(a, "ONE DOES NOT SIMPLY WALK INTO MORDOR", "test-ocr")
        store.set_ocr(b, "WHEN THE CODE WORKS ON THE FIRST TRY", "test-ocr")
        assert store.keyword_search(["mordor"], [], 10) == [a]
        assert store.keyword_search([], ["first try"], 10) == [b]
        assert store.keyword_search(["nothing-like-this"], [], 10) == []

    def test_file_name_words_are_searchable_with_low_weight(self, store):
        named = add_meme(store, "/m/drake-hotline-bling.jpg", "sa")
        camel = add_meme(store, "/m/DistractedBoyfriend2.png", "sb")
        texted = add_meme(store, "/m/IMG_0001.png", "sc")
        store.set_ocr(texted, "drake says no to this", "test-ocr")
        assert set(store.keyword_search(["drake"], [], 10)) == {named, texted}
        assert store.keyword_search(["drake"], [], 10)[0] == texted  # text outweighs the file name
        assert store.keyword_search(["hotline", "bling"], [], 10) == [named]
        assert store.keyword_search(["boyfriend"], [], 10) == [camel]
        assert store.keyword_search(["jpg"], [], 10) == []  # the extension is not a word
        # A rename (same content) updates the words.
        record = store.get_meme(camel)
        store.update_file(camel, FileRecord(path="/m/woman-yelling-at-cat.png", folder_id=None, size=10, mtime=2.0,
                                            sha256="sb", phash="0" * 16, width=10, height=10, format="png", frames=1,
                                            status="ok"), content_changed=False)
        assert record.id == camel
        assert store.keyword_search(["boyfriend"], [], 10) == []
        assert store.keyword_search(["yelling", "cat"], [], 10) == [camel]

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

    def test_image_vectors_keep_their_own_space_and_stage(self, store):
        """Visual search stores image vectors per model space next to text vectors; writing one
        space never marks another space's stage done, and spaces never mix."""
        a = add_meme(store, "/m/a.png", "sa")
        b = add_meme(store, "/m/b.png", "sb")
        assert store.ids_needing_vectors("text-model") == [a, b]
        store.put_vectors("image:clip-a", [(a, "sa", np.ones(4, dtype=np.float32))], stage="image_embed")
        store.put_vectors("image:clip-b", [(a, "sa", np.full(6, 0.5, dtype=np.float32)),
                                           (b, "sb", np.full(6, 0.5, dtype=np.float32))], stage="image_embed")
        assert store.ids_needing_vectors("text-model") == [a, b]  # the text stage is not done by images
        assert store.pending("image_embed") == []
        assert store.vector_hash(a, "image:clip-a", stage="image_embed") == "sa"
        assert store.vector_hash(a, "image:clip-a") is None  # the embed stage of a's text is not done
        store.put_vectors("text-model", [(a, "t1", np.ones(3, dtype=np.float32))])
        assert store.vector_hash(a, "text-model") == "t1"
        assert store.vector_hashes("image:clip-a") == {a: "sa"}
        ids_a, matrix_a = store.load_vectors("image:clip-a")
        ids_b, matrix_b = store.load_vectors("image:clip-b")
        assert list(ids_a) == [a] and matrix_a.shape == (1, 4)
        assert list(ids_b) == [a, b] and matrix_b.shape == (2, 6)

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

    def test_phashes_signature_follows_every_hash_and_status_change(self, store):
        a = add_meme(store, "/m/a.png", "sa")
        first = store.phashes_signature()
        assert store.phashes_signature() == first  # nothing changed: a cached copy stays valid
        b = add_meme(store, "/m/b.png", "sb")
        second = store.phashes_signature()
        assert second != first
        store.update_file(a, FileRecord(path="/m/a.png", folder_id=None, size=11, mtime=2.0, sha256="sa2",
                                        phash="f" * 16, width=10, height=10, format="png", frames=1, status="ok"),
                          content_changed=True)
        third = store.phashes_signature()
        assert third != second and dict(store.phashes())[a] == "f" * 16
        store.set_status([b], "missing")
        assert store.phashes_signature() != third and [i for i, _ in store.phashes()] == [a]

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
        store.set_status([b], "error")  # unreadable memes are not results either
        assert store.keyword_search(["grumpy"], [], 10) == [a]
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

    # -- export / import (memesearch.store.transfer): records keyed by path --------------
    def test_identical_files_keep_their_own_records(self, store, tmp_path):
        folder = store.add_folder("/lib/memes")
        ids = [add_meme(store, f"/lib/memes/{n}.png", "same", folder_id=folder.id) for n in "abc"]
        records = [_record(f"/lib/memes/{n}.png", "same", user_description=f"only {n}", tags=[f"tag-{n}"]) for n in "abc"]
        assert import_library(store, _document(tmp_path, records)) == {"applied": 3, "pending": 0}
        memes = store.get_memes(ids)
        assert [(m.user_description, m.tags) for m in memes] == [(f"only {n}", [f"tag-{n}"]) for n in "abc"]
        assert _exported(store, tmp_path) == sorted(records, key=lambda r: r["path"])

    def test_records_of_files_not_indexed_yet_wait_for_them(self, store, tmp_path):
        folder = store.add_folder("/lib/memes")
        records = [_record(f"/lib/memes/{n}.png", "same", user_description=f"only {n}", tags=[f"tag-{n}"]) for n in "abc"]
        records.append(_record("/lib/memes/broken.png", None, user_description="unreadable but mine", tags=["err"]))
        assert import_library(store, _document(tmp_path, records)) == {"applied": 0, "pending": 4}
        assert import_library(store, _document(tmp_path, records)) == {"applied": 0, "pending": 4}  # replaced, not doubled
        assert len(store.pending_records()) == 4
        assert _exported(store, tmp_path) == sorted(records, key=lambda r: r["path"])  # waiting records are exported again, not lost
        by_name = {}
        for name in ("c", "broken", "a", "b"):  # indexed in another order than imported
            by_name[name] = store.insert_file(FileRecord(
                path=f"/lib/memes/{name}.png", folder_id=folder.id, size=1, mtime=1.0,
                sha256=None if name == "broken" else "same", status="error" if name == "broken" else "ok"))
        assert store.pending_records() == []
        for name, meme_id in by_name.items():
            meme = store.get_meme(meme_id)
            assert meme.user_description == ("unreadable but mine" if name == "broken" else f"only {name}")
            assert meme.tags == (["err"] if name == "broken" else [f"tag-{name}"])
        assert sorted(store.keyword_search(["only"], [], 5)) == sorted(by_name[n] for n in "abc")  # indexed for search
        assert store.keyword_search(["unreadable"], [], 5) == []  # errored memes are not results...
        assert _exported(store, tmp_path) == sorted(records, key=lambda r: r["path"])  # ...but keep their record

    def test_a_library_moved_elsewhere_matches_by_folder_name_and_relative_path(self, store, tmp_path):
        memes = store.add_folder("/mnt/disk/memes")
        pictures = store.add_folder("/mnt/disk/pictures")
        moved = add_meme(store, "/mnt/disk/memes/sub/ünï.png", "s1", folder_id=memes.id)
        other = add_meme(store, "/mnt/disk/pictures/sub/ünï.png", "s2", folder_id=pictures.id)
        record = _record("/home/me/memes/sub/ünï.png", "s1", folder="/home/me/memes", relative="sub/ünï.png",
                         user_description="followed the folder")
        later = _record("/home/me/memes/later.png", "s3", folder="/home/me/memes", relative="later.png", tags=["later"])
        assert import_library(store, _document(tmp_path, [record, later])) == {"applied": 1, "pending": 1}
        assert store.get_meme(moved).user_description == "followed the folder"
        assert store.get_meme(other).user_description == ""
        arrived = add_meme(store, "/mnt/disk/memes/later.png", "different-bytes-now", folder_id=memes.id)
        assert store.get_meme(arrived).tags == ["later"]

    def test_hash_follows_a_moved_file_only_when_unambiguous(self, store, tmp_path):
        renamed = add_meme(store, "/lib/renamed.png", "moved")
        twins = [add_meme(store, f"/lib/twin{n}.png", "twin") for n in (1, 2)]
        kept, copy = add_meme(store, "/lib/kept.png", "pair"), add_meme(store, "/lib/copy-renamed.png", "pair")
        records = [
            _record("/old/original.png", "moved", user_description="moved file"),
            _record("/old/twin.png", "twin", user_description="which twin?"),
            _record("/lib/kept.png", "pair", user_description="kept its path"),
            _record("/old/copy.png", "pair", user_description="the other copy"),
        ]
        assert import_library(store, _document(tmp_path, records)) == {"applied": 3, "pending": 1}
        assert store.get_meme(renamed).user_description == "moved file"
        assert [store.get_meme(t).user_description for t in twins] == ["", ""]  # two candidates: it waits
        assert (store.get_meme(kept).user_description, store.get_meme(copy).user_description) == (
            "kept its path", "the other copy")
        # A waiting record goes by hash to a new file only when no other meme has those bytes.
        assert store.get_meme(add_meme(store, "/lib/twin3.png", "twin")).user_description == ""
        assert [r["user_description"] for _, r in store.pending_records()] == ["which twin?"]

    def test_import_merges_and_never_overwrites(self, store, tmp_path):
        meme_id = add_meme(store, "/lib/a.png", "sa")
        store.set_user_description(meme_id, "mine")
        store.add_tags(meme_id, ["Cats"])
        store.set_description(meme_id, Description(model_id="cap", text="local caption", created_at=1.0))
        record = _record("/lib/a.png", "sa", user_description="theirs", tags=["cats", "new"], ocr_text="OCR", ocr_engine="rapidocr",
                         descriptions=[_description("cap", "imported caption"), _description("other", "second model")])
        path = _document(tmp_path, [record])
        import_library(store, path)
        import_library(store, path)  # twice: nothing doubles
        meme = store.get_meme(meme_id)
        assert (meme.user_description, sorted(meme.tags), meme.ocr_text) == ("mine", ["Cats", "new"], "OCR")
        assert {(d.model_id, d.text) for d in meme.descriptions} == {("cap", "local caption"), ("other", "second model")}
        assert store.keyword_search(["second", "model"], [], 5) == [meme_id]

    def test_version_1_exports_still_import(self, store, tmp_path):
        a, b = add_meme(store, "/lib/a.png", "s1"), add_meme(store, "/lib/b.png", "s1")
        document = {"format": "memesearch-export", "version": 1, "memes": [
            {"sha256": "s1", "paths": ["/lib/a.png", "/lib/b.png"], "user_description": "shared", "tags": ["t"],
             "ocr_text": "", "ocr_engine": None, "descriptions": []},
            {"sha256": "s2", "paths": ["/lib/c.png"], "user_description": "comes later", "tags": [], "descriptions": []},
        ]}
        path = tmp_path / "v1.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        assert import_library(store, path) == {"applied": 2, "pending": 1}
        assert [store.get_meme(i).user_description for i in (a, b)] == ["shared", "shared"]
        assert store.get_meme(add_meme(store, "/lib/c.png", "s2")).user_description == "comes later"

    def test_malformed_export_is_refused_whole(self, store, tmp_path):
        meme_id = add_meme(store, "/lib/a.png", "sa")
        records = [_record("/lib/a.png", "sa", user_description="fine"), {"path": "/lib/b.png", "tags": "not a list"}]
        with pytest.raises(InvalidInputError, match="record 2"):
            import_library(store, _document(tmp_path, records))
        assert store.get_meme(meme_id).user_description == ""
        assert store.pending_records() == []


def _description(model_id: str, text: str) -> dict:
    return {"model_id": model_id, "text": text, "backend": "onnx", "dtype": "fp32", "revision": "r1", "ms": 12.5,
            "created_at": 1000.0}


def _record(path: str, sha: str | None, *, folder: str | None = None, relative: str | None = None, **texts) -> dict:
    if folder is None and path.startswith("/lib/memes/"):
        folder, relative = "/lib/memes", path.removeprefix("/lib/memes/")
    return {"path": path, "folder": folder, "relative": relative, "sha256": sha, "user_description": "", "tags": [],
            "ocr_text": "", "ocr_engine": None, "descriptions": [], **texts}


def _document(tmp_path, records: list[dict]):
    path = tmp_path / "import.json"
    path.write_text(json.dumps({"format": "memesearch-export", "version": 2, "memes": records}), encoding="utf-8")
    return path


def _exported(store, tmp_path) -> list[dict]:
    export_library(store, tmp_path / "export.json")
    return json.loads((tmp_path / "export.json").read_text(encoding="utf-8"))["memes"]
