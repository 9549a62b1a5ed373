"""RMSNorm subgraphs of an exported graph as onnxruntime's SimplifiedLayerNormalization kernel.

The exporter writes each RMSNorm (Gemma: x * rsqrt(mean(x^2) + eps) * (1 + w)) as seven elementwise nodes, and
onnxruntime's own SimplifiedLayerNormFusion does not match that form (the Sqrt -> Reciprocal -> Mul order, the
scale folded to a constant), so an exported RMSNorm runs as seven nodes where one kernel would do (measured on
EmbeddingGemma: docs/design/onnx-export.md). The kernel computes the same expression in float32; BERT-like
LayerNorms (mean subtracted) do not match and are left alone.

SimplifiedLayerNormalization is an onnxruntime kernel (ONNX domain, not in the ONNX standard before opset 23's
RMSNormalization), so only the graphs onnxruntime runs are fused, after any onnx.checker pass.
"""

from __future__ import annotations

from collections import defaultdict


def _constant(initializers: dict, producers: dict, name: str):
    from onnx import numpy_helper

    if name in initializers:
        return numpy_helper.to_array(initializers[name])
    node = producers.get(name)
    if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
        return numpy_helper.to_array(node.attribute[0].t)
    return None


def _names_used(graph) -> set[str]:
    """Every value name a node reads, in subgraphs (If/Loop bodies) too."""
    used = set()
    for node in graph.node:
        used.update(node.input)
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                used |= _names_used(sub)
    return used


def fuse_rms_norms(model) -> int:
    """Replace Pow(x, 2) -> ReduceMean(last axis) -> Add(eps) -> Sqrt -> Reciprocal -> Mul(x) -> Mul(weight) by
    SimplifiedLayerNormalization(x, weight), in place; returns how many. A chain whose intermediate values are used
    elsewhere, or whose axis, exponent, epsilon or weight is not a constant of the expected shape, is left as is."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    graph_outputs = {out.name for out in graph.output}

    def sole(name: str, op_type: str):
        users = consumers.get(name, [])
        if len(users) == 1 and users[0].op_type == op_type and name not in graph_outputs:
            return users[0]
        return None

    replaced: dict[int, object] = {}
    removed: set[int] = set()
    new_initializers = []
    for mean in [node for node in graph.node if node.op_type == "ReduceMean"]:
        square = producers.get(mean.input[0])
        if square is None or square.op_type != "Pow" or sole(square.output[0], "ReduceMean") is None:
            continue
        exponent = _constant(initializers, producers, square.input[1])
        if exponent is None or exponent.size != 1 or float(exponent.ravel()[0]) != 2.0:
            continue
        x = square.input[0]
        attributes = {a.name: helper.get_attribute_value(a) for a in mean.attribute}
        axes = (_constant(initializers, producers, mean.input[1]) if len(mean.input) > 1 and mean.input[1]
                else np.array(attributes.get("axes", [])))
        if axes is None or [int(a) for a in np.ravel(axes)] != [-1] or attributes.get("keepdims", 1) != 1:
            continue
        add = sole(mean.output[0], "Add")
        if add is None:
            continue
        epsilon = _constant(initializers, producers, add.input[1] if add.input[0] == mean.output[0] else add.input[0])
        if epsilon is None or epsilon.size != 1:
            continue
        sqrt = sole(add.output[0], "Sqrt")
        reciprocal = sole(sqrt.output[0], "Reciprocal") if sqrt is not None else None
        normed = sole(reciprocal.output[0], "Mul") if reciprocal is not None else None
        if sqrt is None or reciprocal is None or normed is None or sorted(normed.input) != sorted([x, reciprocal.output[0]]):
            continue
        scaled = sole(normed.output[0], "Mul")
        if scaled is None:
            continue
        weight_name = scaled.input[1] if scaled.input[0] == normed.output[0] else scaled.input[0]
        weight = _constant(initializers, producers, weight_name)
        if weight is None or weight.ndim != 1 or weight.dtype != np.float32:
            continue
        if weight_name not in initializers:
            weight_name = f"{scaled.output[0]}_rms_weight"
            new_initializers.append(numpy_helper.from_array(weight, weight_name))
        chain = [square, mean, add, sqrt, reciprocal, normed, scaled]
        replaced[id(scaled)] = helper.make_node(
            "SimplifiedLayerNormalization", [x, weight_name], [scaled.output[0]], name=f"{mean.name or x}_rms_norm",
            axis=-1, epsilon=float(epsilon.ravel()[0]), stash_type=1,
        )
        removed.update(id(node) for node in chain)
    if not replaced:
        return 0
    nodes = [replaced.get(id(node), node) for node in graph.node if id(node) not in removed or id(node) in replaced]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_initializers)
    used = _names_used(graph) | graph_outputs
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return len(replaced)
