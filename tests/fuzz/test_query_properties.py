"""Property tests: the query parser and the search engine on arbitrary unicode input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from memesearch.errors import InvalidInputError
from memesearch.search.query import parse_query
from tests.conftest import make_core
from tests.reliability import tried

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
pytestmark = pytest.mark.timeout(120)

# Words the parser must keep as they are: no spaces, no quotes, no "key:" prefix.
plain_word = st.text(st.characters(blacklist_categories=("Z", "Cc", "Cs"), blacklist_characters='":'),
                     min_size=1, max_size=12).filter(lambda w: w.split() == [w])
phrase_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='"'), max_size=30)
filter_value = plain_word


@FUZZ
@given(st.text(max_size=200))
def test_the_parser_never_raises_and_keeps_every_visible_token(query):
    tried()
    parsed = parse_query(query)
    assert isinstance(parsed.text, str)
    for word in parsed.words:
        assert word and word in query
    for phrase in parsed.phrases:
        assert phrase == " ".join(phrase.split()) and phrase


@FUZZ
@given(st.lists(plain_word, max_size=8))
def test_plain_words_round_trip(words):
    tried()
    assert parse_query(" ".join(words)).words == words


@FUZZ
@given(phrase_text, st.lists(plain_word, max_size=3))
def test_quoted_phrases_are_normalised_whitespace(phrase, words):
    tried()
    parsed = parse_query(" ".join([f'"{phrase}"', *words]))
    assert parsed.phrases == ([" ".join(phrase.split())] if phrase.split() else [])
    assert parsed.words == words


@FUZZ
@given(filter_value, st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='"'), min_size=1,
                             max_size=20).filter(str.strip), plain_word)
def test_filters_are_recognised_plain_or_quoted(tag, quoted_folder, word):
    tried()
    parsed = parse_query(f'tag:{tag} folder:"{quoted_folder}" {word} format:.GIF is:described')
    assert parsed.filters.tags == [tag.strip()]
    assert parsed.filters.folders == [quoted_folder.strip()]
    assert parsed.filters.formats == ["gif"] and parsed.filters.described is True
    assert parsed.words == [word]


@FUZZ
@given(st.from_regex(r"[A-Za-z]{1,6}", fullmatch=True), plain_word)
def test_unknown_keys_are_searched_as_text(key, value):
    tried()
    query = f"{key}:{value}"
    parsed = parse_query(query)
    if key.lower() not in ("tag", "folder", "format", "is"):
        assert parsed.words == [query] and parsed.filters.is_empty()


@pytest.fixture(scope="module")
def engine(tmp_path_factory, shared_models_dir):
    """Four memes with OCR text and real MiniLM vectors: a real store, a real engine."""
    from memesearch.library.scanner import scan_folder

    root = tmp_path_factory.mktemp("fuzz-search")
    folder = root / "memes"
    folder.mkdir()
    texts = ["when the code compiles first try", "日本語のミーム テスト", "🔥 this is fine 🔥", "tag me maybe"]
    for index, _ in enumerate(texts):
        Image.new("RGB", (32, 32), (index * 60, 10, 10)).save(folder / f"m{index}.png")
    core = make_core(root / "data", shared_models_dir, threads=1)
    store = core.store
    scan_folder(store, store.add_folder(str(folder)), core.settings)
    for meme_id, text in zip(store.meme_ids(), texts, strict=True):
        store.set_ocr(meme_id, text, "test")
    store.add_tags(store.meme_ids()[3], ["reaction", "Hot Take"])
    core.pipeline.run_embed()
    yield core.search_engine
    core.close()


@FUZZ
@given(st.text(max_size=80), st.sampled_from(["keyword", "vector", "hybrid"]))
def test_search_never_raises_on_arbitrary_unicode(engine, query, mode):
    tried()
    result = engine.search(query, mode=mode, limit=5)
    assert len(result.hits) <= 5
    assert len({hit.id for hit in result.hits}) == len(result.hits)


@FUZZ
@given(st.text(max_size=10), st.integers(-5, 2000), st.integers(-5, 50), st.text(max_size=8))
def test_bad_search_arguments_raise_only_invalid_input(engine, query, limit, offset, mode):
    tried()
    try:
        engine.search(query, mode=mode, limit=limit, offset=offset)
    except InvalidInputError as exc:
        assert exc.message
