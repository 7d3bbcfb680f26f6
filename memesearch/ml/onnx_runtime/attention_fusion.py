"""Fuse a ViT's exported attention products into one com.microsoft MultiHeadAttention node.

The TorchScript export writes eager attention as Reshape/Transpose of the projected Q, K and V,
MatMul, Mul (scale), Add (mask), Softmax, MatMul, Transpose, Reshape: on SmolVLM's vision
encoder (1,024 patches x 12 heads) these fp32 products and their memory passes were most of the
int8 graph's time (docs/BENCHMARKS.md, issue 16). MultiHeadAttention takes the already
projected Q, K and V, so the projections stay separate int8 MatMuls with their own per-tensor
scales, and the int8 reference (ml/families/common/int8_reference.py) still describes the graph:
only the fp32 arithmetic of softmax(QK^T * scale + mask) V changes order.

With ``without_mask`` the additive patch mask is left out. ONNX Runtime then takes its CPU flash
attention path (about 13% less CPU for SmolVLM's int8 encoder than with the mask, 5% with it):
right only for callers that feed whole tiles, as OnnxSmolVLMCaptioner does (an all-ones
pixel_attention_mask, so the mask adds zeros).
"""

from __future__ import annotations

import numpy as np


def fuse_attention(model, num_heads: int, *, without_mask: bool = False) -> int:
    """Rewrite in place every matched attention block of ``model`` (an onnx ModelProto); how many."""
    from onnx import helper

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = _constants(graph)
    replaced: dict[int, list] = {}  # id(output Reshape) -> the nodes written in its place
    expanded: dict[str, str] = {}  # mask -> the mask expanded over the queries, made once
    for softmax in [node for node in graph.node if node.op_type == "Softmax"]:
        found = _match(softmax, producers, consumers, constants)
        if found is None:
            continue
        (query, key, value, bias, scale), reshape = found
        new = [] if without_mask or bias in expanded else _expand_over_queries(graph, bias, expanded)
        mask = [] if without_mask else ["", "", expanded[bias]]
        new.append(helper.make_node(
            "MultiHeadAttention", [query, key, value, *mask], [reshape.output[0]],
            name=f"{reshape.name or reshape.output[0]}/MultiHeadAttention", domain="com.microsoft",
            num_heads=num_heads, scale=scale,
        ))
        replaced[id(reshape)] = new
    if not replaced:
        return 0
    nodes = [new for node in graph.node for new in replaced.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(_live(nodes, {output.name for output in graph.output}))
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(replaced)


def _expand_over_queries(graph, bias: str, expanded: dict[str, str]) -> list:
    """Nodes that broadcast the (B, 1, 1, S) key mask to (B, 1, S, S): MultiHeadAttention's
    attention_bias must name every query row."""
    from onnx import helper, numpy_helper

    prefix = f"{bias}/over_queries"

    def constant(suffix: str, value: list[int]) -> str:
        graph.initializer.append(numpy_helper.from_array(np.array(value, np.int64), f"{prefix}/{suffix}"))
        return f"{prefix}/{suffix}"

    shape, lead, keys, out = f"{prefix}/shape", f"{prefix}/lead", f"{prefix}/keys", f"{prefix}/mask"
    expanded[bias] = out
    return [
        helper.make_node("Shape", [bias], [shape]),
        helper.make_node("Slice", [shape, constant("lead_start", [0]), constant("lead_end", [2])], [lead]),  # B, 1
        helper.make_node("Slice", [shape, constant("keys_start", [3]), constant("keys_end", [4])], [keys]),  # S
        helper.make_node("Concat", [lead, keys, keys], [f"{prefix}/target"], axis=0),
        helper.make_node("Expand", [bias, f"{prefix}/target"], [out]),
    ]


def _constants(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _perm(node) -> list[int]:
    from onnx import helper

    return next((list(helper.get_attribute_value(a)) for a in node.attribute if a.name == "perm"), [])


def _match(softmax, producers, consumers, constants):
    """((query, key, value, mask, scale), output Reshape) of the eager attention around ``softmax``."""
    def producer(name, op):
        node = producers.get(name)
        return node if node is not None and node.op_type == op else None

    def only_consumer(name, op):
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def heads_input(name, perm):  # Reshape(B, S, H, D) then Transpose: the projected tensor
        transpose = producer(name, "Transpose")
        reshape = transpose and _perm(transpose) == perm and producer(transpose.input[0], "Reshape")
        return reshape.input[0] if reshape else None

    add = producer(softmax.input[0], "Add")
    mul = add and next((producers.get(n) for n in add.input if getattr(producers.get(n), "op_type", "") == "Mul"), None)
    if not mul:
        return None
    bias = next(n for n in add.input if n != mul.output[0])
    scale_name = next((n for n in mul.input if n in constants and constants[n].size == 1), None)
    scores = next((producer(n, "MatMul") for n in mul.input if n != scale_name), None)
    if scale_name is None or scores is None:
        return None
    query, key = heads_input(scores.input[0], [0, 2, 1, 3]), heads_input(scores.input[1], [0, 2, 3, 1])
    probabilities = softmax.output[0]
    while (cast := only_consumer(probabilities, "Cast")) is not None:  # the export's fp32 -> fp32 casts
        probabilities = cast.output[0]
    context = only_consumer(probabilities, "MatMul")
    if context is None or context.input[0] != probabilities:
        return None
    value = heads_input(context.input[1], [0, 2, 1, 3])
    merged = only_consumer(context.output[0], "Transpose")
    reshape = merged and _perm(merged) == [0, 2, 1, 3] and only_consumer(merged.output[0], "Reshape")
    if not (query and key and value and reshape):
        return None
    return (query, key, value, bias, float(constants[scale_name].reshape(()))), reshape


def _live(nodes: list, outputs: set[str]) -> list:
    """``nodes`` without those whose outputs nothing reads (the unfused attention's leftovers)."""
    needed, kept = set(outputs), []
    for node in reversed(nodes):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    return kept[::-1]
