"""Template grouping as a stage of `memesearch index`: real files, real OCR, the CLI's JSON contract."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memesearch.templates.synthetic import render_template_set


def cli(home, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "memesearch", "--data-dir", str(home), *args],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("templates-lib")
    memes = render_template_set(root / "memes", templates=3, variants=3, distractors=4, seed=1)
    home = root / "data"
    cli(home, "add", str(root / "memes"))
    cli(home, "index")
    return home, memes


def test_index_groups_memes_by_template(library):
    home, memes = library
    listed = json.loads(cli(home, "templates", "--json"))
    paths = {m.path.resolve(): m.template for m in memes}
    assert len(listed["groups"]) == 3
    for group in listed["groups"]:
        assert set(group) == {"id", "name", "size", "members"} and group["size"] == len(group["members"]) == 4
        templates = {paths[Path(m["path"])] for m in group["members"]}
        assert len(templates) == 1 and templates != {None}  # one template, no distractor
        assert all(os.path.isabs(m["path"]) for m in group["members"])
    member = listed["groups"][0]["members"][0]["id"]
    assert json.loads(cli(home, "show", str(member), "--json"))["template_group"] == listed["groups"][0]["id"]


def test_a_second_index_run_is_incremental_and_a_new_variant_joins(library, tmp_path):
    home, memes = library
    before = json.loads(cli(home, "templates", "--json"))["groups"]
    summary = json.loads(cli(home, "index", "--json"))
    assert summary["templates"]["done"] == 0  # nothing new: no features recomputed
    # A copy of a variant under a new name joins its group.
    variant = next(m for m in memes if m.template == 0 and m.recipe != "blank")
    shutil.copy(variant.path, variant.path.with_name("copy-of-variant.png"))
    summary = json.loads(cli(home, "index", "--json"))
    assert summary["templates"]["done"] == 1
    after = json.loads(cli(home, "templates", "--json"))["groups"]
    grown = [g for g in after if g["size"] == 5]
    assert len(grown) == 1 and {g["id"] for g in after} == {g["id"] for g in before}


def test_name_a_group(library):
    home, _ = library
    group = json.loads(cli(home, "templates", "--json"))["groups"][0]["id"]
    cli(home, "templates", "name", str(group), "Galaxy brain")
    named = [g for g in json.loads(cli(home, "templates", "--json"))["groups"] if g["id"] == group]
    assert named[0]["name"] == "Galaxy brain"


def test_query_language_and_siblings_find_template_groups(library):
    home, memes = library
    groups = json.loads(cli(home, "templates", "--json"))["groups"]
    group = groups[-1]
    members = {m["id"] for m in group["members"]}
    found = json.loads(cli(home, "search", f"template:{group['id']}", "--json", "--limit", "50"))
    assert {hit["id"] for hit in found["hits"]} == members
    one = min(members)
    found = json.loads(cli(home, "search", f"same:{one}", "--json", "--limit", "50"))
    assert {hit["id"] for hit in found["hits"]} == members
    # template:/same: with anything that is not an id are searched as words, never an error.
    cli(home, "search", "template:drake same:-1", "--json")

    # Naming the group makes the name find every member, whatever their captions say.
    cli(home, "templates", "name", str(group["id"]), "Zorblax Quantum")
    found = json.loads(cli(home, "search", "zorblax quantum", "--json", "--mode", "keyword", "--limit", "50"))
    assert members <= {hit["id"] for hit in found["hits"]}

    # --siblings: a hit is followed by the rest of its group.
    texts = [json.loads(cli(home, "show", str(m), "--json"))["ocr_text"].split() for m in sorted(members)]
    words = max(texts, key=len)[:3]
    assert words, "a captioned member has OCR text"
    found = json.loads(cli(home, "search", " ".join(words), "--json", "--mode", "keyword", "--siblings",
                           "--limit", "20"))
    ids = [hit["id"] for hit in found["hits"]]
    first = next(i for i, hit in enumerate(ids) if hit in members)
    assert set(ids[first : first + len(members)]) == members
