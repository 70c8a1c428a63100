"""One-pass ranking of quantized layers by their quantization noise, for the gate's fallback.

Instead of re-quantizing the model once per layer (leave-one-out: minutes), the Q/DQ model is run once
with the float input *and* the quantize-dequantized input of every quantized layer exposed as outputs
(the comparison ONNX Runtime's ``qdq_loss_debug`` makes between the tensors before and after each Q/DQ
pair, done here on the node names our gate uses). A layer's noise is the relative error its Q/DQ pairs
add to its inputs, ``||x - dq(q(x))|| / ||x||``, summed over its quantized inputs; weights are measured
from the initialisers without running anything. Layers that do not feed the outputs the gate reads
(``landmarks``, ``rotation``) rank last with a relevance of 0: keeping them in float cannot help the gate.

:func:`fa3d.calibration.gate.greedy_exclude` then keeps layers in float in this order.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from fa3d.runtime.backends.onnxrt import cpu_session
from fa3d.runtime.lazy import lazy_import

onnx = lazy_import("onnx", extra="export")

GATED_OUTPUTS = ("landmarks", "rotation")


@dataclass(frozen=True)
class LayerNoise:
    layer: str
    activation_noise: float  # relative L2 error added by the Q/DQ pairs on its activation inputs
    weight_noise: float  # the same for its weights
    relevant: bool  # feeds a gated output

    @property
    def score(self) -> float:
        return (self.activation_noise + self.weight_noise) if self.relevant else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "score": self.score}


def _consts(graph) -> dict[str, np.ndarray]:
    out = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = onnx.numpy_helper.to_array(a.t)
    return out


def _ancestors(graph, outputs: Sequence[str]) -> set[str]:
    """Names of the nodes that feed any of ``outputs``."""
    producer = {o: n for n in graph.node for o in n.output}
    seen: set[str] = set()
    todo = [producer[o] for o in outputs if o in producer]
    while todo:
        n = todo.pop()
        if n.name in seen:
            continue
        seen.add(n.name)
        todo += [producer[x] for x in n.input if x in producer]
    return seen


def _qdq_source(producer: dict, tensor: str):
    """(float tensor before the pair, Q node) when ``tensor`` is the output of DequantizeLinear(QuantizeLinear(x))."""
    dq = producer.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = producer.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return None
    return q.input[0], q


def _weight_noise(w: np.ndarray, q_node, consts: dict[str, np.ndarray]) -> float:
    scale = consts[q_node.input[1]].astype(np.float64)
    zp = consts[q_node.input[2]].astype(np.float64) if len(q_node.input) > 2 and q_node.input[2] else 0.0
    axis = next((a.i for a in q_node.attribute if a.name == "axis"), 1)
    w = w.astype(np.float64)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * w.ndim
        shape[axis] = scale.size
        scale = scale.reshape(shape)
        zp = np.reshape(zp, shape) if np.ndim(zp) else zp
    deq = (np.clip(np.rint(w / scale) + zp, -128, 127) - zp) * scale
    return float(np.linalg.norm(w - deq) / max(np.linalg.norm(w), 1e-12))


def rank_layers(qdq_onnx: str | os.PathLike, inputs: np.ndarray, layers: Sequence[str], *,
                max_faces: int = 64, batch_size: int = 16, threads: int = 1,
                gated_outputs: Sequence[str] = GATED_OUTPUTS) -> list[LayerNoise]:
    """``layers`` of the Q/DQ model ranked by quantization noise, noisiest first (one inference pass)."""
    model = onnx.load(str(qdq_onnx))
    g = model.graph
    consts, producer = _consts(g), {o: n for n in g.node for o in n.output}
    relevant = _ancestors(g, gated_outputs)
    by_name = {n.name: n for n in g.node}
    pairs: dict[str, list[tuple[str, str]]] = {}  # layer -> [(float tensor, after Q/DQ)]
    w_noise: dict[str, float] = {}
    for layer in layers:
        node = by_name.get(layer)
        if node is None:
            continue
        for x in node.input[:2]:
            src = _qdq_source(producer, x)
            if src is None:
                continue
            pre, q = src
            if pre in consts:
                w_noise[layer] = w_noise.get(layer, 0.0) + _weight_noise(consts[pre], q, consts)
            else:
                pairs.setdefault(layer, []).append((pre, x))
    wanted = sorted({t for ps in pairs.values() for p in ps for t in p} - {o.name for o in g.output})
    g.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in wanted)
    with tempfile.TemporaryDirectory(prefix="fa3d-rank-") as tmp:
        onnx.save(model, os.path.join(tmp, "debug.onnx"))
        sess = cpu_session(os.path.join(tmp, "debug.onnx"), threads)
    name = sess.get_inputs()[0].name
    out_names = [o.name for o in sess.get_outputs()]
    sig, err = {}, {}
    x_all = np.ascontiguousarray(inputs[:max_faces], dtype=np.float32)
    for i in range(0, len(x_all), batch_size):
        vals = dict(zip(out_names, sess.run(None, {name: x_all[i:i + batch_size]})))
        for layer, ps in pairs.items():
            for pre, post in ps:
                a = vals[pre].astype(np.float64)
                sig[(layer, pre)] = sig.get((layer, pre), 0.0) + float(np.sum(a * a))
                err[(layer, pre)] = err.get((layer, pre), 0.0) + float(np.sum((a - vals[post]) ** 2))
    a_noise: dict[str, float] = {}
    for (layer, pre), s in sig.items():
        a_noise[layer] = a_noise.get(layer, 0.0) + float(np.sqrt(err[(layer, pre)] / max(s, 1e-24)))
    ranked = [LayerNoise(layer=layer, activation_noise=a_noise.get(layer, 0.0), weight_noise=w_noise.get(layer, 0.0),
                         relevant=layer in relevant) for layer in layers if layer in by_name]
    return sorted(ranked, key=lambda r: -r.score)
