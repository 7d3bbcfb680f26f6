"""SmolVLM's GroupQueryAttention decoder (memesearch/ml/families/smolvlm/decoder_graph.py).

The exporter writes it by default; tests/models/test_smolvlm.py and test_int8_reference.py run
it through the captioner (fp32, int8 and q4 against their references). Here: the graph itself
against the PyTorch text model, step by step on a right-padded batch; its size; and the
community (traced, left-padded) decoder, which the captioner must still run.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from memesearch.ml.base import CaptionRequest  # noqa: E402
from memesearch.ml.families.smolvlm.assets import onnx_path  # noqa: E402
from memesearch.ml.families.smolvlm.decoder_graph import TextConfig, UnsupportedDecoder, build_decoder  # noqa: E402
from memesearch.ml.families.smolvlm.export import export  # noqa: E402
from memesearch.ml.families.smolvlm.onnx_backend import OnnxSmolVLMCaptioner  # noqa: E402
from memesearch.ml.families.smolvlm.tiny import TINY_PROMPT, build_tiny_checkpoint, reference_generate  # noqa: E402

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 12


def noise_image(height: int, width: int, seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), seed=1)


@pytest.fixture(scope="module")
def model(checkpoint):
    return transformers.Idefics3ForConditionalGeneration.from_pretrained(checkpoint, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def decoder(model, tmp_path_factory):
    text = TextConfig.from_config(model.config.text_config.to_dict())
    weights = {name: tensor.detach().numpy() for name, tensor in model.model.text_model.state_dict().items()}
    weights["lm_head.weight"] = model.lm_head.weight.detach().numpy()
    path = tmp_path_factory.mktemp("gqa") / "decoder.onnx"
    onnx.save(build_decoder(weights, text), str(path))
    return text, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), path


def _torch_last_logits(model, embeds: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        hidden = model.model.text_model(inputs_embeds=torch.from_numpy(embeds)[None]).last_hidden_state
        return model.lm_head(hidden[:, -1]).numpy()[0]


def test_right_padded_prefill_and_steps_equal_the_torch_text_model(model, decoder):
    """Rows of 9, 3 and 6 tokens, then three one-token steps: every row's logits equal those of
    the text model over that row's real tokens alone (rotary positions, causal window, cache)."""
    text, session, _ = decoder
    lengths = np.array([9, 3, 6])
    rng = np.random.default_rng(0)
    embeds = rng.normal(size=(3, 9, text.hidden)).astype(np.float32)
    rows = [embeds[b, :length] for b, length in enumerate(lengths)]
    embeds[1, 3:] = embeds[2, 6:] = 7.0  # padding: any values, they must not leak into real rows
    empty = np.zeros((3, text.kv_heads, 0, text.head_dim), dtype=np.float32)
    past = {f"past_key_values.{i}.{kind}": empty for i in range(text.layers) for kind in ("key", "value")}
    names = [output.name for output in session.get_outputs()]
    totals, total = lengths, 9
    for step in range(4):
        feed = {"inputs_embeds": embeds, "seqlens_k": (totals - 1).astype(np.int32),
                "total_sequence_length": np.array(total, dtype=np.int32), **past}
        outputs = session.run(names, feed)
        for b in range(3):
            expected = _torch_last_logits(model, np.concatenate(rows[b]) if step else rows[b])
            np.testing.assert_allclose(outputs[0][b, 0], expected, rtol=1e-4, atol=1e-4)
        embeds = rng.normal(size=(3, 1, text.hidden)).astype(np.float32)
        rows = [[row] if step == 0 else row for row in rows]
        for b in range(3):
            rows[b].append(embeds[b])
        past = {name.replace("present", "past_key_values"): value for name, value in zip(names[1:], outputs[1:])}
        totals = totals + 1
        total = int(totals.max())


def test_each_layer_is_thirteen_nodes(decoder):
    """The point of the graph: one GroupQueryAttention per layer, no traced mask/rotary/concat glue."""
    text, _, path = decoder
    ops = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    assert ops["GroupQueryAttention"] == text.layers
    assert ops["MatMul"] == 7 * text.layers + 1  # q k v o gate up down, and the LM head
    assert sum(ops.values()) <= 13 * text.layers + 20  # + the rotary caches, the last-token gather
    assert not {"Softmax", "Concat", "Transpose", "Where"} & set(ops)


def test_unsupported_text_models_are_refused():
    base = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4}
    assert TextConfig.from_config(base).head_dim == 16
    for extra in ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 1e4}}, {"hidden_act": "gelu"},
                  {"attention_bias": True}):
        with pytest.raises(UnsupportedDecoder):
            TextConfig.from_config({**base, **extra})


@pytest.mark.parametrize("gqa", [True, False], ids=["gqa-right-padded", "traced-left-padded"])
def test_both_decoder_graphs_caption_a_padded_batch_like_torch(checkpoint, tmp_path, gqa):
    """Our GQA graph and the community-style traced graph (what HuggingFace downloads look like):
    the captioner picks its loop from the decoder's inputs, and both give torch's tokens for a
    batch whose prompts differ in length, and the same tokens one image at a time."""
    exported = export(checkpoint, tmp_path / "onnx", gqa=gqa)
    inputs = {i.name for i in onnx.load(str(exported / onnx_path("decoder_model_merged", "fp32"))).graph.input}
    assert ("seqlens_k" in inputs) == gqa and ("attention_mask" in inputs) != gqa
    captioner = OnnxSmolVLMCaptioner(exported, threads=1)
    captioner.batch_size = 3
    images = [noise_image(90, 40, 1), noise_image(20, 20, 2), noise_image(50, 70, 3)]  # 3, 1 and 5 tiles
    requests = [CaptionRequest(image=image, prompt=TINY_PROMPT, max_new_tokens=MAX_NEW_TOKENS) for image in images]
    batched = [result.token_ids for result in captioner.caption(requests)]
    assert captioner._gqa == gqa
    assert batched == reference_generate(checkpoint, images, TINY_PROMPT, MAX_NEW_TOKENS)
    assert batched == [captioner.caption([request])[0].token_ids for request in requests]
    assert len({tuple(ids) for ids in batched}) > 1
    if gqa:  # the KV cache written in place (the default) or copied into each step's present
        captioner.share_kv_buffer = False
        assert [result.token_ids for result in captioner.caption(requests)] == batched
