"""Build an ONNX graph of a BERT encoder straight from ``model.safetensors``, without torch.

The graph is written with plain ``onnx.helper`` nodes of the standard domain (opset 17),
so any onnxruntime can run it; its optimiser fuses the bias+GELU and the attention scaling.
The weights are embedded, which limits this to checkpoints under protobuf's 2 GB.
It reproduces transformers' ``BertModel`` (absolute positions, post-LayerNorm blocks)
and outputs ``last_hidden_state``; pooling is left to the caller because published
ONNX files of the same models output only that too.

Usage::

    build_bert_onnx(model_dir, out_path)   # model_dir holds config.json + model.safetensors
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"
#: Bumped whenever the graph layout changes, so cached files built by an older layout are rebuilt.
BUILDER_VERSION = 2

_SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


class BertConfig:
    """The handful of config.json fields the graph depends on, validated."""

    def __init__(self, raw: dict) -> None:
        self.hidden = int(raw["hidden_size"])
        self.layers = int(raw["num_hidden_layers"])
        self.heads = int(raw["num_attention_heads"])
        self.eps = float(raw.get("layer_norm_eps", 1e-12))
        self.activation = str(raw.get("hidden_act", "gelu"))
        if raw.get("model_type", "bert") != "bert":
            # RoBERTa-style models offset positions by padding_idx; this graph would be silently wrong.
            raise ValueError(f"only model_type 'bert' is supported, not {raw.get('model_type')!r}")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        if self.activation not in _SUPPORTED_ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {self.activation!r}")
        if self.hidden % self.heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        self.head_dim = self.hidden // self.heads

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))


def load_bert_weights(path: Path) -> dict[str, np.ndarray]:
    """Read safetensors as float32 numpy arrays, with any ``bert.`` prefix removed."""
    from safetensors import safe_open

    weights: dict[str, np.ndarray] = {}
    with safe_open(str(path), framework="np") as handle:
        for key in handle.keys():
            name = key[len("bert.") :] if key.startswith("bert.") else key
            weights[name] = handle.get_tensor(key)
    return weights


class _GraphBuilder:
    """Accumulates nodes and initialisers; every helper returns its output name."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list = []
        self.initializers: list = []
        self._initializer_names: set[str] = set()
        self._counter = 0

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        self._counter += 1
        out = f"{op_type.lower()}_{self._counter}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def const(self, name: str, array: np.ndarray) -> str:
        """Add an initialiser once; later calls with the same name reuse it."""
        from onnx import numpy_helper

        if name not in self._initializer_names:
            self._initializer_names.add(name)
            self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def scalar(self, name: str, value: float) -> str:
        return self.const(name, np.array(value, dtype=np.float32))

    def ints(self, name: str, values: list[int] | int) -> str:
        return self.const(name, np.array(values, dtype=np.int64))

    def weight(self, key: str, *, transpose: bool = False) -> str:
        if key not in self.weights:
            raise KeyError(f"checkpoint has no tensor {key!r}")
        array = self.weights[key].astype(np.float32)
        return self.const(key, array.T if transpose else array)

    def linear(self, x: str, prefix: str) -> str:
        # torch Linear stores (out, in); MatMul wants (in, out).
        product = self.op("MatMul", [x, self.weight(f"{prefix}.weight", transpose=True)])
        return self.op("Add", [product, self.weight(f"{prefix}.bias")])

    def layer_norm(self, x: str, prefix: str, eps: float) -> str:
        scale, bias = self.weight(f"{prefix}.weight"), self.weight(f"{prefix}.bias")
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)


def _activation(g: _GraphBuilder, x: str, kind: str) -> str:
    if kind == "relu":
        return g.op("Relu", [x])
    if kind == "gelu":
        # Exact erf form, written as x * (1 + erf(x / sqrt2)) * 0.5: onnxruntime's GeluFusion
        # only recognises this Div-first order (a Mul by 1/sqrt2 stays five slow kernels).
        inner = g.op("Erf", [g.op("Div", [x, g.scalar("const_sqrt2", math.sqrt(2.0))])])
    else:  # tanh approximation used by gelu_new / gelu_pytorch_tanh
        cubic = g.op("Mul", [g.op("Pow", [x, g.scalar("const_three", 3.0)]), g.scalar("const_gelu_c", 0.044715)])
        scaled = g.op("Mul", [g.op("Add", [x, cubic]), g.scalar("const_sqrt_2_pi", math.sqrt(2.0 / math.pi))])
        inner = g.op("Tanh", [scaled])
    gated = g.op("Mul", [x, g.op("Add", [inner, g.scalar("const_one", 1.0)])])
    return g.op("Mul", [gated, g.scalar("const_half", 0.5)])


def _embeddings(g: _GraphBuilder, cfg: BertConfig) -> str:
    words = g.op("Gather", [g.weight("embeddings.word_embeddings.weight"), "input_ids"], axis=0)
    # Positions 0..S-1 are the first S rows of the table (S = dynamic sequence length).
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)
    table = g.weight("embeddings.position_embeddings.weight")
    pos = g.op("Slice", [table, g.ints("const_zero_1d", [0]), seq_len, g.ints("const_zero_1d", [0])])
    types = g.op("Gather", [g.weight("embeddings.token_type_embeddings.weight"), "token_type_ids"], axis=0)
    summed = g.op("Add", [g.op("Add", [words, pos]), types])
    return g.layer_norm(summed, "embeddings.LayerNorm", cfg.eps)


def _additive_mask(g: _GraphBuilder) -> str:
    """(B, S) 1/0 mask -> (B, 1, 1, S) with 0 for tokens and a huge negative for padding."""
    mask = g.op("Cast", ["attention_mask"], to=1)  # 1 = FLOAT
    inverted = g.op("Sub", [g.scalar("const_one", 1.0), mask])
    # transformers uses finfo(float32).min too; exp() of it is exactly 0 after softmax.
    negative = g.op("Mul", [inverted, g.scalar("const_mask_min", float(np.finfo(np.float32).min))])
    return g.op("Unsqueeze", [negative, g.ints("const_axes_1_2", [1, 2])])


def _split_heads(g: _GraphBuilder, x: str, cfg: BertConfig, perm: list[int]) -> str:
    """(B, S, H) -> (B, heads, S, head_dim), or (B, heads, head_dim, S) for keys."""
    shape = g.ints("const_heads_shape", [0, 0, cfg.heads, cfg.head_dim])
    return g.op("Transpose", [g.op("Reshape", [x, shape])], perm=perm)


def _encoder_layer(g: _GraphBuilder, x: str, mask: str, cfg: BertConfig, index: int) -> str:
    p = f"encoder.layer.{index}"
    query = _split_heads(g, g.linear(x, f"{p}.attention.self.query"), cfg, [0, 2, 1, 3])
    key = _split_heads(g, g.linear(x, f"{p}.attention.self.key"), cfg, [0, 2, 3, 1])
    value = _split_heads(g, g.linear(x, f"{p}.attention.self.value"), cfg, [0, 2, 1, 3])
    scale = g.scalar("const_attn_scale", 1.0 / math.sqrt(cfg.head_dim))
    scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [query, key]), scale]), mask])
    probs = g.op("Softmax", [scores], axis=-1)
    context = g.op("Transpose", [g.op("MatMul", [probs, value])], perm=[0, 2, 1, 3])
    context = g.op("Reshape", [context, g.ints("const_merged_shape", [0, 0, cfg.hidden])])
    attended = g.linear(context, f"{p}.attention.output.dense")
    x = g.layer_norm(g.op("Add", [attended, x]), f"{p}.attention.output.LayerNorm", cfg.eps)
    inner = _activation(g, g.linear(x, f"{p}.intermediate.dense"), cfg.activation)
    out = g.linear(inner, f"{p}.output.dense")
    return g.layer_norm(g.op("Add", [out, x]), f"{p}.output.LayerNorm", cfg.eps)


def build_bert_model(cfg: BertConfig, weights: dict[str, np.ndarray]):
    """Return an in-memory ``onnx.ModelProto`` for the encoder."""
    from onnx import TensorProto, helper

    g = _GraphBuilder(weights)
    hidden = _embeddings(g, cfg)
    mask = _additive_mask(g)
    for index in range(cfg.layers):
        hidden = _encoder_layer(g, hidden, mask, cfg, index)
    g.nodes.append(helper.make_node("Identity", [hidden], [OUTPUT_NAME], name="output"))

    dims = ["batch", "sequence"]
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, dims) for name in INPUT_NAMES]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [*dims, cfg.hidden])]
    graph = helper.make_graph(g.nodes, "bert_encoder", inputs, outputs, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="memesearch")
    model.ir_version = 8  # readable by every onnxruntime that supports opset 17
    return model


def build_bert_onnx(model_dir: Path, out_path: Path) -> Path:
    """Convert ``model_dir``'s config.json + model.safetensors into ``out_path`` (atomically)."""
    import onnx

    model_dir, out_path = Path(model_dir), Path(out_path)
    cfg = BertConfig.from_file(model_dir / "config.json")
    model = build_bert_model(cfg, load_bert_weights(model_dir / "model.safetensors"))
    if model.ByteSize() >= 2**31:
        raise ValueError("checkpoint too large for a single-file ONNX model (2 GB protobuf limit)")
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # A temp file in the same folder then os.replace: readers never see half a model,
    # and two processes building at once both end with a complete file.
    fd, tmp_name = tempfile.mkstemp(prefix=out_path.name + ".", suffix=".tmp", dir=out_path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; the cache may be shared with a service user
        with os.fdopen(fd, "wb") as handle:
            handle.write(model.SerializeToString())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, out_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return out_path
