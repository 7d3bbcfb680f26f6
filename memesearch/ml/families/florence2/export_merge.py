"""Merge a no-cache and a with-cache decoder into one ``decoder_model_merged.onnx``.

The layout Optimum and the onnx-community repos use: one ``If`` node switched by a
boolean ``use_cache_branch`` input, the two decoders as its branches, and the
weights stored once in the outer graph (both branches read them from there).
"""

from __future__ import annotations

import hashlib

import onnx
from onnx import helper


def _content_key(tensor: onnx.TensorProto) -> tuple:
    data = onnx.numpy_helper.to_array(tensor).tobytes()
    return tensor.data_type, tuple(tensor.dims), hashlib.sha256(data).hexdigest()


def _produced_names(graph: onnx.GraphProto) -> set[str]:
    names = {value.name for value in graph.input}
    for node in graph.node:
        names.update(node.output)
    return names


def _rename_inputs(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in mapping:
                node.input[position] = mapping[name]


def _share_initializers(graphs: list[onnx.GraphProto]) -> list[onnx.TensorProto]:
    """One outer initializer per distinct tensor; branch nodes are renamed to point at it."""
    taken = set().union(*(_produced_names(graph) for graph in graphs))
    shared: dict[tuple, onnx.TensorProto] = {}
    for index, graph in enumerate(graphs):
        mapping: dict[str, str] = {}
        for tensor in graph.initializer:
            key = _content_key(tensor)
            if key not in shared:
                name = tensor.name
                while name in taken:  # same name, different content (or a value's name)
                    name = f"{name}__branch{index}"
                copy = onnx.TensorProto()
                copy.CopyFrom(tensor)
                copy.name = name
                shared[key] = copy
                taken.add(name)
            mapping[tensor.name] = shared[key].name
        _rename_inputs(graph, mapping)
        del graph.initializer[:]
    return list(shared.values())


def _branch(graph: onnx.GraphProto, name: str) -> onnx.GraphProto:
    """A subgraph without inputs (it reads the outer ones) and with branch-local output names."""
    outputs = []
    mapping = {}
    for value in graph.output:
        local = f"{name}/{value.name}"
        mapping[value.name] = local
        outputs.append(helper.make_tensor_value_info(local, value.type.tensor_type.elem_type, None))
    nodes = list(graph.node)
    for node in nodes:
        for position, output in enumerate(node.output):
            if output in mapping:
                node.output[position] = mapping[output]
        for position, item in enumerate(node.input):
            if item in mapping:
                node.input[position] = mapping[item]
    return helper.make_graph(nodes, name, inputs=[], outputs=outputs)


def _ensure_outputs_are_computed(graph: onnx.GraphProto) -> None:
    """A graph output that is a graph input directly (the cached cross-attention keys) gets an Identity."""
    input_names = {value.name for value in graph.input}
    for value in graph.output:
        if value.name in input_names:
            source = value.name
            value.name = f"{source}__out"
            graph.node.append(helper.make_node("Identity", [source], [value.name]))


def merge_decoders(no_cache: onnx.ModelProto, with_cache: onnx.ModelProto) -> onnx.ModelProto:
    """Both models must have the same output names in the same order."""
    output_names = [value.name for value in no_cache.graph.output]
    if output_names != [value.name for value in with_cache.graph.output]:
        raise ValueError("decoder outputs differ between the no-cache and the with-cache export")
    outer_outputs = []
    for value in no_cache.graph.output:  # copies: the branches rename their own outputs below
        copy = onnx.ValueInfoProto()
        copy.CopyFrom(value)
        outer_outputs.append(copy)
    _ensure_outputs_are_computed(no_cache.graph)
    _ensure_outputs_are_computed(with_cache.graph)

    inputs: dict[str, onnx.ValueInfoProto] = {}
    for value in [*with_cache.graph.input, *no_cache.graph.input]:
        if value.name not in inputs:
            inputs[value.name] = onnx.ValueInfoProto()
            inputs[value.name].CopyFrom(value)
    use_cache_branch = helper.make_tensor_value_info("use_cache_branch", onnx.TensorProto.BOOL, [1])

    initializers = _share_initializers([no_cache.graph, with_cache.graph])
    if_node = helper.make_node(
        "If",
        inputs=["use_cache_branch"],
        outputs=output_names,
        name="use_cache_switch",
        then_branch=_branch(with_cache.graph, "with_cache"),
        else_branch=_branch(no_cache.graph, "no_cache"),
    )
    graph = helper.make_graph(
        [if_node],
        "decoder_model_merged",
        inputs=[*inputs.values(), use_cache_branch],
        outputs=outer_outputs,
        initializer=initializers,
    )
    opsets = {opset.domain: opset.version for opset in [*no_cache.opset_import, *with_cache.opset_import]}
    merged = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets.items()]
    )
    merged.ir_version = max(no_cache.ir_version, with_cache.ir_version)
    return merged
