"""Write SmolVLM's text decoder (a Llama / SmolLM2 model) directly as a small ONNX graph.

The TorchScript export of the decoder traces transformers' eager attention, its mask building,
rotary embedding and KV concatenation: ~100 nodes per layer, 2,969 kernels per generated token,
of which the quantised MatMuls were only a third of the time (docs/BENCHMARKS.md, issue 16).
Here each layer is 13 nodes: RMS norms carrying the residual
(``SkipSimplifiedLayerNormalization``), the q/k/v/o/gate/up/down MatMuls and one
``com.microsoft.GroupQueryAttention`` that applies the rotary embedding, appends to the KV cache
and attends. The MatMuls stay separate, plain ``x @ W^T`` with one weight each, so
``quantize_matmuls`` and the int8 reference (ml/families/common/int8_reference.py, one
per-tensor scale per ``nn.Linear``) describe the int8 graph as before.

Built from numpy weights named as in the checkpoint's text model (``layers.0.self_attn.q_proj
.weight``, ``norm.weight``) plus ``lm_head.weight`` and the text config, so it needs no torch.

Graph contract (right padding, unlike the community graphs' left padding, because
GroupQueryAttention takes each row's length rather than a mask):

* ``inputs_embeds`` (batch, seq, hidden); each row's real tokens first, padding after;
* ``seqlens_k`` int32 (batch,): each row's total length (cache + real new tokens) minus one;
* ``total_sequence_length`` int32 scalar: the largest total length of the batch;
* ``past_key_values.{i}.key/value`` (batch, kv_heads, past, head_dim), empty for the prompt;
* ``logits`` (batch, 1, vocab) of each row's last real token, ``present.{i}.key/value``: row b's
  cache is valid up to ``seqlens_k[b]``, what lies beyond is unspecified.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: Inputs that tell this graph from the community decoders (inputs_embeds, attention_mask, position_ids).
GQA_INPUTS = ("seqlens_k", "total_sequence_length")


class UnsupportedDecoder(ValueError):
    """The text model uses a feature this writer does not implement (the exporter then traces it)."""


@dataclass(frozen=True)
class TextConfig:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    rms_eps: float
    rope_theta: float

    @classmethod
    def from_config(cls, text: Mapping) -> TextConfig:
        """From config.json's ``text_config``; refuses what the graph would compute differently."""
        rope = dict(text.get("rope_parameters") or {})
        scaling = text.get("rope_scaling") or {}
        rope_type = rope.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
        theta = rope.get("rope_theta", text.get("rope_theta", 10000.0))
        problems = []
        if rope_type != "default":
            problems.append(f"rope type {rope_type!r}")
        if text.get("hidden_act", "silu") != "silu":
            problems.append(f"activation {text.get('hidden_act')!r}")
        if text.get("attention_bias") or text.get("mlp_bias"):
            problems.append("biased projections")
        if float(text.get("partial_rotary_factor", 1.0)) != 1.0:
            problems.append("partial rotary")
        heads = int(text["num_attention_heads"])
        head_dim = int(text.get("head_dim") or int(text["hidden_size"]) // heads)
        if head_dim % 16:  # GroupQueryAttention's rotary kernel needs it
            problems.append(f"head_dim {head_dim} (not a multiple of 16)")
        if problems:
            raise UnsupportedDecoder("text model not supported by the GroupQueryAttention decoder: " + ", ".join(problems))
        return cls(
            layers=int(text["num_hidden_layers"]),
            hidden=int(text["hidden_size"]),
            heads=heads,
            kv_heads=int(text.get("num_key_value_heads") or heads),
            head_dim=head_dim,
            rms_eps=float(text.get("rms_norm_eps", 1e-6)),
            rope_theta=float(theta),
        )


def inverse_frequencies(config: TextConfig) -> np.ndarray:
    """Llama's default rotary frequencies, 1 / theta^(2i / head_dim), as float32."""
    exponents = np.arange(0, config.head_dim, 2, dtype=np.int64).astype(np.float32) / config.head_dim
    return (1.0 / (config.rope_theta ** exponents.astype(np.float64))).astype(np.float32)


def build_decoder(weights: Mapping[str, np.ndarray], config: TextConfig):
    """The decoder ModelProto (fp32). ``weights``: text-model parameter names -> arrays."""
    from onnx import IR_VERSION, ModelProto, TensorProto, helper, numpy_helper

    # Weights go straight into the model's graph: make_graph / make_model would copy them twice
    # more (three copies of 540 MB at once for the 256M model).
    model = ModelProto(ir_version=IR_VERSION)  # as make_model sets it
    nodes, initializers = [], model.graph.initializer

    def constant(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], outputs: list[str], name: str, **attrs) -> None:
        domain = "com.microsoft" if op in ("GroupQueryAttention", "SkipSimplifiedLayerNormalization") else ""
        nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))

    def linear(x: str, weight: str, out: str) -> str:
        # nn.Linear as MatMul by the transposed weight: the one op quantize_matmuls turns into int8.
        w = constant(weight, np.asarray(weights[weight], dtype=np.float32).T)
        node("MatMul", [x, w], [out], name=f"{out}/MatMul")
        return out

    def skip_norm(x: str, residual: str, weight: str, prefix: str) -> tuple[str, str]:
        """RMSNorm(x + residual) and x + residual, in one kernel."""
        gamma = constant(weight, np.asarray(weights[weight], dtype=np.float32))
        normed, summed = f"{prefix}/normed", f"{prefix}/residual"
        node("SkipSimplifiedLayerNormalization", [x, residual, gamma], [normed, "", "", summed],
             name=f"{prefix}/SkipNorm", epsilon=config.rms_eps)
        return normed, summed

    # GroupQueryAttention's cos/sin caches, (total_sequence_length, head_dim / 2): computed per
    # run (a few thousand cos/sin) rather than stored, since GQA refuses a cache shorter than the
    # sequence and max_position_embeddings does not bound it (a tiny model's prompt can exceed it).
    # angle = position * inv_freq in float32, as transformers' rotary embedding computes it.
    constant("inv_freq", inverse_frequencies(config)[None, :])
    for name, value in (("rope/zero", 0), ("rope/step", 1)):
        constant(name, np.array(value, dtype=np.int32))
    node("Range", ["rope/zero", "total_sequence_length", "rope/step"], ["rope/positions"], name="rope/Range")
    node("Cast", ["rope/positions"], ["rope/positions_float"], name="rope/Cast", to=TensorProto.FLOAT)
    constant("rope/column", np.array([1], dtype=np.int64))
    node("Unsqueeze", ["rope/positions_float", "rope/column"], ["rope/position_column"], name="rope/Unsqueeze")
    node("Mul", ["rope/position_column", "inv_freq"], ["rope/angles"], name="rope/Angles")
    node("Cos", ["rope/angles"], ["cos_cache"], name="rope/Cos")
    node("Sin", ["rope/angles"], ["sin_cache"], name="rope/Sin")
    first_norm = constant("layers.0.input_layernorm.weight", weights["layers.0.input_layernorm.weight"])
    node("SimplifiedLayerNormalization", ["inputs_embeds", first_norm], ["layers.0/input_norm"],
         name="layers.0/input_norm", axis=-1, epsilon=config.rms_eps, stash_type=1)
    normed, residual = "layers.0/input_norm", "inputs_embeds"
    inputs = [
        helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, ["batch_size", "sequence_length", config.hidden]),
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["batch_size"]),
        helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", 1, None])]
    cache_shape = ["batch_size", config.kv_heads, None, config.head_dim]
    for i in range(config.layers):
        p = f"layers.{i}"
        past = [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        present = [f"present.{i}.key", f"present.{i}.value"]
        inputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, cache_shape) for name in past]
        outputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, cache_shape) for name in present]
        q = linear(normed, f"{p}.self_attn.q_proj.weight", f"{p}/q")
        k = linear(normed, f"{p}.self_attn.k_proj.weight", f"{p}/k")
        v = linear(normed, f"{p}.self_attn.v_proj.weight", f"{p}/v")
        node("GroupQueryAttention", [q, k, v, *past, "seqlens_k", "total_sequence_length", "cos_cache", "sin_cache"],
             [f"{p}/attention", *present], name=f"{p}/GroupQueryAttention",
             num_heads=config.heads, kv_num_heads=config.kv_heads, scale=config.head_dim**-0.5,
             do_rotary=1, rotary_interleaved=0)
        attention = linear(f"{p}/attention", f"{p}.self_attn.o_proj.weight", f"{p}/o")
        normed, residual = skip_norm(attention, residual, f"{p}.post_attention_layernorm.weight", f"{p}/post_attention")
        gate = linear(normed, f"{p}.mlp.gate_proj.weight", f"{p}/gate")
        up = linear(normed, f"{p}.mlp.up_proj.weight", f"{p}/up")
        node("Sigmoid", [gate], [f"{p}/gate_sigmoid"], name=f"{p}/Sigmoid")
        node("Mul", [gate, f"{p}/gate_sigmoid"], [f"{p}/silu"], name=f"{p}/SiLU")  # silu(x) = x * sigmoid(x)
        node("Mul", [f"{p}/silu", up], [f"{p}/gated"], name=f"{p}/Gate")
        down = linear(f"{p}/gated", f"{p}.mlp.down_proj.weight", f"{p}/down")
        last = i == config.layers - 1
        norm_weight = "norm.weight" if last else f"layers.{i + 1}.input_layernorm.weight"
        normed, residual = skip_norm(down, residual, norm_weight, "final" if last else f"layers.{i + 1}/input")

    # Logits of each row's last real token only (the prompt's ~1,000 positions x 49,280 would
    # cost ~20% of the prefill): index min(seqlens_k, seq - 1), i.e. the prompt's last real
    # token, or 0 for a one-token step.
    constant("one", np.array(1, dtype=np.int64))
    constant("seq_axis", np.array([1], dtype=np.int64))
    constant("row_shape", np.array([-1, 1, 1], dtype=np.int64))
    constant("hidden_shape", np.array([1, 1, config.hidden], dtype=np.int64))
    node("Shape", ["inputs_embeds"], ["last/shape"], name="last/Shape")
    node("Gather", ["last/shape", "seq_axis"], ["last/seq"], name="last/Seq", axis=0)
    node("Sub", ["last/seq", "one"], ["last/seq_end"], name="last/SeqEnd")
    node("Cast", ["seqlens_k"], ["last/seqlens"], name="last/Cast", to=TensorProto.INT64)
    node("Min", ["last/seqlens", "last/seq_end"], ["last/index"], name="last/Index")
    node("Reshape", ["last/index", "row_shape"], ["last/index_rows"], name="last/Rows")
    node("Expand", ["last/index_rows", "hidden_shape"], ["last/gather_index"], name="last/Expand")
    node("GatherElements", [normed, "last/gather_index"], ["last/hidden"], name="last/Gather", axis=1)
    linear("last/hidden", "lm_head.weight", "logits")

    model.graph.name = "smolvlm_decoder_gqa"
    model.graph.node.extend(nodes)
    model.graph.input.extend(inputs)
    model.graph.output.extend(outputs)
    model.opset_import.extend([helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    return model
