"""QueryBatcher: concurrent queries share model calls, each caller gets its own vector or error."""

from __future__ import annotations

import threading
import time

import numpy as np
from memesearch.ml.minilm import MiniLmEmbedder
from memesearch.search import query_batcher
from memesearch.search.query_batcher import QueryBatcher


class RecordingModel:
    """Embeds a text as [len(text), first char code]; the first call blocks until released so
    the test can queue more queries behind it."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = threading.Event()

    def __call__(self, texts):
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            self.release.wait(10)
        if any(text == "boom" for text in texts):
            raise RuntimeError("model failed")
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)


def _ask_while_busy(batcher: QueryBatcher, model: RecordingModel, texts: list[str]) -> tuple[dict, dict]:
    """Send "x" first and, while the model is busy with it, ``texts`` from threads of their own;
    release the model once all of them are queued. Returns (vectors, errors) by text."""
    results, errors = {}, {}

    def ask(text: str) -> None:
        try:
            results[text] = batcher.embed(text)
        except RuntimeError as exc:
            errors[text] = str(exc)

    first = threading.Thread(target=ask, args=("x",))
    first.start()
    _wait_for(lambda: len(model.calls) == 1)  # the model is now busy with "x"
    threads = [threading.Thread(target=ask, args=(text,)) for text in texts]
    for thread in threads:
        thread.start()
    _wait_for(lambda: batcher._queue.qsize() == len(texts))
    model.release.set()
    for thread in [first, *threads]:
        thread.join(5)
    return results, errors


def _wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_lone_query_is_embedded_alone():
    model = RecordingModel()
    model.release.set()
    vector = QueryBatcher(model).embed("hello")
    np.testing.assert_array_equal(vector, [5, ord("h")])
    assert model.calls == [["hello"]]


def test_queries_arriving_while_the_model_is_busy_share_one_call():
    model = RecordingModel()
    batcher = QueryBatcher(model, max_batch=16)
    texts = ["bb", "ccc", "dddd", "eeeee"]
    results, errors = _ask_while_busy(batcher, model, texts)
    assert not errors
    assert model.calls[0] == ["x"]
    assert sorted(model.calls[1]) == sorted(texts)  # all four waited and went in one call
    for text in texts:
        np.testing.assert_array_equal(results[text], [len(text), ord(text[0])])
    np.testing.assert_array_equal(results["x"], [1, ord("x")])


def test_batches_are_capped():
    model = RecordingModel()
    results, _ = _ask_while_busy(QueryBatcher(model, max_batch=2), model, ["p", "q", "r", "s", "t"])
    assert [len(call) for call in model.calls[1:]] == [2, 2, 1]
    assert sorted(results) == ["p", "q", "r", "s", "t", "x"]


def test_a_model_error_reaches_every_caller_of_that_batch_and_the_batcher_keeps_working():
    model = RecordingModel()
    batcher = QueryBatcher(model)
    _, errors = _ask_while_busy(batcher, model, ["boom", "fine"])
    assert errors == {"boom": "model failed", "fine": "model failed"}
    np.testing.assert_array_equal(batcher.embed("ok"), [2, ord("o")])


def test_the_idle_thread_exits_and_restarts_on_demand(monkeypatch):
    monkeypatch.setattr(query_batcher, "IDLE_SECONDS", 0.05)
    model = RecordingModel()
    model.release.set()
    batcher = QueryBatcher(model)
    batcher.embed("one")
    _wait_for(lambda: batcher._thread is None)
    np.testing.assert_array_equal(batcher.embed("two"), [3, ord("t")])


def test_real_minilm_batched_vectors_match_single_ones(shared_models_dir):
    """Padding inside a batch must not change a query's vector (attention masks)."""
    embedder = MiniLmEmbedder(cache_dir=shared_models_dir / "all-minilm-l6-v2", threads=1)
    texts = ["one does not simply", "distracted boyfriend", "this is fine", "a",
             "drake hotline bling says no to work and yes to memes", "ça va", "猫", "stonks"]
    alone = np.stack([embedder.embed_queries([text])[0] for text in texts])
    together = embedder.embed_queries(texts)
    np.testing.assert_allclose(together, alone, atol=2e-6)
