"""End-to-end retrieval on rendered memes with real OCR and real MiniLM embeddings.

A person remembers a few words of a meme; quoting 3-6 consecutive words must
find it. Targets (issue 2): rank 1 for >= 90 % of memes, top 5 for >= 95 %.
"""

from __future__ import annotations

import random

import pytest

pytestmark = pytest.mark.slow


def _remembered_words(text: str, rng: random.Random) -> str:
    words = text.split()
    length = min(len(words), rng.randint(3, 6))
    start = rng.randint(0, len(words) - length)
    return " ".join(words[start : start + length])


def _rank(result, path) -> int | None:
    paths = [hit.path for hit in result.hits]
    return paths.index(str(path)) + 1 if str(path) in paths else None


def test_index_summary(indexed):
    core, samples, summary = indexed
    assert len(samples) >= 60
    assert summary["counts"]["ok"] == len(samples)
    assert summary["ocr"]["failed"] == [] and summary["embed"]["done"] == len(samples)


@pytest.mark.parametrize("mode,rank1_target,top5_target", [("hybrid", 0.90, 0.95), ("keyword", 0.85, 0.90)])
def test_quoting_a_few_words_finds_the_meme(indexed, mode, rank1_target, top5_target):
    core, samples, _ = indexed
    rng = random.Random(11)
    ranks = []
    for sample in samples:
        query = _remembered_words(sample.text, rng)
        ranks.append((query, _rank(core.search_engine.search(query, mode=mode, limit=5), sample.path)))
    rank1 = sum(r == 1 for _, r in ranks) / len(ranks)
    top5 = sum(r is not None for _, r in ranks) / len(ranks)
    misses = [(q, r) for q, r in ranks if r != 1]
    assert rank1 >= rank1_target, f"{mode}: rank-1 {rank1:.2%}, misses: {misses}"
    assert top5 >= top5_target, f"{mode}: top-5 {top5:.2%}, misses: {misses}"


def test_spaceless_ocr_text_is_found_by_spaced_words(indexed):
    core, samples, _ = indexed
    target = next(s for s in samples if s.text == "one does not simply walk into mordor")
    meme = next(m for m in core.store.get_memes(core.store.meme_ids()) if m.path == str(target.path))
    assert " " not in meme.ocr_text.strip()  # the OCR really lost the spaces
    result = core.search_engine.search("does not simply", limit=5)
    assert result.hits[0].path == str(target.path)


def test_non_english_text_is_searchable_without_diacritics(indexed):
    core, samples, _ = indexed
    accented = [s for s in samples if any(ord(ch) > 127 for ch in s.text)]
    assert accented, "the corpus must contain non-English memes"
    found = 0
    for sample in accented:
        accented_word = max((w for w in sample.text.split() if any(ord(c) > 127 for c in w)), key=len)
        from memesearch.text import fold
        import unicodedata

        plain = "".join(c for c in unicodedata.normalize("NFKD", fold(accented_word)) if not unicodedata.combining(c))
        neighbours = sample.text.split()
        index = neighbours.index(accented_word)
        query = " ".join(neighbours[max(0, index - 1) : index] + [plain] + neighbours[index + 1 : index + 2])
        result = core.search_engine.search(query, limit=5)
        found += _rank(result, sample.path) is not None
    assert found / len(accented) >= 0.8


def test_vector_search_finds_meaning_not_just_words(indexed):
    core, samples, _ = indexed
    # Every sample caption is distinct; the vector ranking of a caption's own text must put it first.
    hits = 0
    for sample in samples[:20]:
        result = core.search_engine.search(sample.text.lower(), mode="vector", limit=3)
        hits += _rank(result, sample.path) == 1
    assert hits >= 18


def test_filters_apply_to_search(indexed):
    core, samples, _ = indexed
    gif = next(s for s in samples if s.format == "gif")
    result = core.search_engine.search(f"format:gif {_remembered_words(gif.text, random.Random(1))}", limit=50)
    assert result.hits and all(hit.format == "gif" for hit in result.hits)
    assert result.hits[0].path == str(gif.path)


def test_unrelated_query_does_not_return_the_whole_library(indexed):
    core, samples, _ = indexed
    # Every meme has a vector, so without a relevance floor vector search "finds" all of them.
    result = core.search_engine.search("quantum chromodynamics lecture notes", limit=100)
    assert len(result.hits) < len(samples) // 4
    related = core.search_engine.search("coffee", mode="vector", limit=100)
    assert related.hits and all(hit.score >= core.embedder.relevance_floor for hit in related.hits)
