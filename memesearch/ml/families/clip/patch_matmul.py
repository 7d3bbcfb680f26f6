"""CLIP's patch embedding as a MatMul, so that the int8 graph quantises it too.

A ViT cuts the image into patches with a Conv whose kernel equals its stride. ONNX Runtime's
dynamic quantisation turns it into ConvInteger, which was 6x slower than the fp32 Conv
(bench note in docs/BENCHMARKS.md), so our int8 graphs kept it in fp32: 8% of ViT-B/32's
time. Written as Reshape -> Transpose -> MatMul it is one more int8 MatMul (a third of the
fp32 Conv's time). The fp32 graphs are left as published; the int8 reference emulates this
with ``emulate_ort_int8(patch_convs=True)``.
"""

from __future__ import annotations

import numpy as np


def _attribute(node, name: str, default):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _image_shapes(model) -> dict[str, list[int]]:
    """Inferred (batch, C, H, W) of the graph's 4-D tensors whose C, H and W are fixed."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model).graph
    shapes = {}
    for value in [*inferred.input, *inferred.value_info]:
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in value.type.tensor_type.shape.dim]
        if len(dims) == 4 and all(dims[1:]):
            shapes[value.name] = dims
    return shapes


def _patch_conv(node, shapes: dict, weights: dict) -> tuple[np.ndarray, list[int]] | None:
    """(weight, input shape) of a Conv that cuts its graph input into patches, else None."""
    from onnx import numpy_helper

    if node.op_type != "Conv" or node.input[1] not in weights or len(node.input) > 2 and node.input[2] and node.input[2] not in weights:
        return None
    weight = numpy_helper.to_array(weights[node.input[1]])
    shape = shapes.get(node.input[0])
    if weight.ndim != 4 or shape is None:
        return None
    kernel = list(weight.shape[2:])
    plain = (_attribute(node, "group", 1) == 1 and list(_attribute(node, "strides", [1, 1])) == kernel
             and not any(_attribute(node, "pads", [0, 0, 0, 0])) and set(_attribute(node, "dilations", [1, 1])) == {1}
             and _attribute(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))
    fits = shape[1] == weight.shape[1] and shape[2] % kernel[0] == 0 and shape[3] % kernel[1] == 0
    return (weight, shape) if plain and fits else None


def patch_convs_to_matmuls(model) -> int:
    """Rewrite in place every patch-cutting Conv of ``model`` (an onnx ModelProto); how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    if not any(node.op_type == "Conv" for node in graph.node):
        return 0
    shapes = _image_shapes(model)
    nodes, rewritten = [], 0
    for node in graph.node:
        found = _patch_conv(node, shapes, weights)
        if found is None:
            nodes.append(node)
            continue
        weight, (_, channels, height, width) = found
        out_channels, _, kh, kw = weight.shape
        rows, cols = height // kh, width // kw
        prefix = f"{node.name or node.output[0]}/as_matmul"

        def constant(suffix: str, value: np.ndarray) -> str:
            graph.initializer.append(numpy_helper.from_array(value, f"{prefix}/{suffix}"))
            return f"{prefix}/{suffix}"

        def add(op: str, inputs: list[str], output: str | None = None, **attributes) -> str:
            output = output or f"{prefix}/{op}_{len(nodes)}"
            nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
            return output

        grid = add("Reshape", [node.input[0], constant("grid", np.array([-1, channels, rows, kh, cols, kw], np.int64))])
        patches = add("Reshape", [add("Transpose", [grid], perm=[0, 2, 4, 1, 3, 5]),
                                  constant("patches", np.array([-1, rows * cols, channels * kh * kw], np.int64))])
        flat = weight.reshape(out_channels, -1).T.copy()  # (C*kh*kw, O), in the order of the patches' values
        embedded = add("MatMul", [patches, constant("weight", flat)])
        if len(node.input) > 2 and node.input[2]:
            embedded = add("Add", [embedded, node.input[2]])
        add("Reshape", [add("Transpose", [embedded], perm=[0, 2, 1]),
                        constant("map", np.array([-1, out_channels, rows, cols], np.int64))], output=node.output[0])
        rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
        used = {name for node in nodes for name in node.input}
        kept = [tensor for tensor in graph.initializer if tensor.name in used]  # drop the Conv weights
        del graph.initializer[:]
        graph.initializer.extend(kept)
    return rewritten
