"""`sparse24 prune`, checked independently: numpy decides what magnitude 2:4 must keep, onnxruntime runs the
result, and numpy computes what it must output from the same pruned weights."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from onnx import helper, numpy_helper

from conftest import float_init, save_model, value_info

# name -> (op, how the weight is seen as [N][K]) for the eligible layers of the test model
ELIGIBLE = {"W_conv": "conv", "W_conv2": "conv", "W_gemm_kn": "kn", "W_gemm_nk": "nk", "W_mm": "kn"}
INELIGIBLE = {"W_odd": "K % 4 != 0 (K = 10)"}


def build_cnn_mlp(path, rng, external=False):
    """Conv -> Relu -> Conv(1x1) -> Flatten -> Gemm(transB=0) -> Relu -> Gemm(transB=1) -> MatMul -> MatMul(K=10)."""
    inits = [
        float_init(rng, "W_conv", (8, 4, 3, 3)), float_init(rng, "b_conv", (8,)),
        float_init(rng, "W_conv2", (6, 8, 1, 1)),
        float_init(rng, "W_gemm_kn", (216, 32)), float_init(rng, "b_gemm", (32,)),
        float_init(rng, "W_gemm_nk", (16, 32)),
        float_init(rng, "W_mm", (16, 10)),
        float_init(rng, "W_odd", (10, 3)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W_conv", "b_conv"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "W_conv2"], ["c2"], name="conv2"),
        helper.make_node("Flatten", ["c2"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "W_gemm_kn", "b_gemm"], ["g1"], name="fc1", transB=0),
        helper.make_node("Relu", ["g1"], ["r2"], name="relu2"),
        helper.make_node("Gemm", ["r2", "W_gemm_nk"], ["g2"], name="fc2", transB=1),
        helper.make_node("MatMul", ["g2", "W_mm"], ["m1"], name="mm"),
        helper.make_node("MatMul", ["m1", "W_odd"], ["y"], name="odd"),
    ]
    return save_model(nodes, inits, [value_info("x", [2, 4, 6, 6])], [value_info("y", [2, 3])], path,
                      external=external)


def canonical(w, kind):
    """The weight as [N][K] with its 2:4 groups contiguous along K, computed here without sparse24."""
    if kind == "kn":
        return w.T
    if kind == "nk":
        return w
    oc, ic, kh, kw = w.shape  # conv: groups along IC at every (oc, kh, kw)
    return w.transpose(0, 2, 3, 1).reshape(oc, kh * kw * ic)


def expected_magnitude_24(w):
    """Keep the two largest |w| of every group of 4 along K, ties to the lower index."""
    g = w.reshape(-1, 4)
    order = np.argsort(-np.abs(g), axis=1, kind="stable")  # stable: equal magnitudes keep index order
    keep = np.zeros_like(g, dtype=bool)
    np.put_along_axis(keep, order[:, :2], True, axis=1)
    return np.where(keep, g, 0).reshape(w.shape)


def numpy_forward(weights, x):
    def conv(x, w, b=None, pad=0):
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        win = sliding_window_view(x, w.shape[2:], axis=(2, 3))  # [B, C, H, W, kh, kw]
        y = np.einsum("bchwij,ocij->bohw", win, w, optimize=True)
        return y if b is None else y + b[None, :, None, None]

    h = np.maximum(conv(x, weights["W_conv"], weights["b_conv"], pad=1), 0)
    h = conv(h, weights["W_conv2"]).reshape(x.shape[0], -1)
    h = np.maximum(h @ weights["W_gemm_kn"] + weights["b_gemm"], 0)
    h = h @ weights["W_gemm_nk"].T
    return (h @ weights["W_mm"]) @ weights["W_odd"]


def tensors(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.mark.parametrize("external", [False, True], ids=["inline", "external_data"])
def test_prune_magnitude(sparse24, tmp_path, external):
    rng = np.random.default_rng(24)
    src, out = tmp_path / "dense.onnx", tmp_path / "pruned.onnx"
    build_cnn_mlp(src, rng, external=external)
    src_bytes = src.read_bytes()
    before = tensors(onnx.load(str(src)))

    sparse24("prune", src, "-o", out, "--json", tmp_path / "prune.json")
    assert src.read_bytes() == src_bytes, "the input model was modified"
    if external:  # external data stays external, beside the output
        raw = onnx.load(str(out), load_external_data=False)
        assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in raw.graph.initializer)
        assert (tmp_path / "pruned.onnx.data").exists()
    pruned_model = onnx.load(str(out))
    onnx.checker.check_model(pruned_model)
    after = tensors(pruned_model)

    for name, kind in ELIGIBLE.items():
        w0, w1 = canonical(before[name], kind), canonical(after[name], kind)
        groups = w1.reshape(-1, 4)
        assert ((groups == 0).sum(axis=1) >= 2).all(), f"{name} is not 2:4"
        np.testing.assert_array_equal(w1, expected_magnitude_24(w0), err_msg=name)
    for name in before:
        if name not in ELIGIBLE:
            assert before[name].tobytes() == after[name].tobytes(), f"{name} changed but must not"
    # Nothing but the pruned initializers differs: same nodes, inputs, outputs, metadata.
    original = onnx.load(str(src))
    for m in (original, pruned_model):
        del m.graph.initializer[:]
    assert original == pruned_model

    report = json.loads((tmp_path / "prune.json").read_text())
    layers = {l["weight"]: l for l in report["layers"]}
    assert {w for w, l in layers.items() if l["pruned"]} == set(ELIGIBLE)
    assert layers["W_odd"]["note"] == INELIGIBLE["W_odd"]
    for name, kind in ELIGIBLE.items():
        w0, w1 = canonical(before[name], kind), canonical(after[name], kind)
        assert layers[name]["l1_kept"] == pytest.approx(np.abs(w1).sum() / np.abs(w0).sum(), rel=1e-6)
        assert layers[name]["l2_kept"] == pytest.approx(np.linalg.norm(w1) / np.linalg.norm(w0), rel=1e-6)

    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    want = numpy_forward({k: v.astype(np.float64) for k, v in after.items()}, x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())

    # `check` on the output: every pruned layer now fully 2:4.
    sparse24("check", out, "--json", tmp_path / "check.json")
    check = {l["weight"]: l for l in json.loads((tmp_path / "check.json").read_text())["layers"]}
    for name in ELIGIBLE:
        assert check[name]["fraction_24"] == 1.0
    assert check["W_odd"]["eligible"] is False


def test_include_exclude(sparse24, tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "dense.onnx"
    build_cnn_mlp(src, rng)
    before = tensors(onnx.load(str(src)))
    sparse24("prune", src, "-o", tmp_path / "a.onnx", "--include", "^fc", "--exclude", "fc2")
    after = tensors(onnx.load(str(tmp_path / "a.onnx")))
    changed = {n for n in before if before[n].tobytes() != after[n].tobytes()}
    assert changed == {"W_gemm_kn"}


def test_f16_and_shared_weights(sparse24, tmp_path):
    """A float16 weight feeding two MatMuls is pruned once, in its own dtype."""
    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float16), "W16")
    nodes = [helper.make_node("MatMul", ["x", "W16"], ["a"], name="mm_a"),
             helper.make_node("MatMul", ["x", "W16"], ["b"], name="mm_b"),
             helper.make_node("Add", ["a", "b"], ["y"], name="add")]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT16, [1, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT16, [1, 4])
    save_model(nodes, [w], [x], [y], tmp_path / "m.onnx")
    sparse24("prune", tmp_path / "m.onnx", "-o", tmp_path / "p.onnx")
    got = numpy_helper.to_array(onnx.load(str(tmp_path / "p.onnx")).graph.initializer[0])
    assert got.dtype == np.float16
    want = expected_magnitude_24(numpy_helper.to_array(w).astype(np.float32).T).T
    np.testing.assert_array_equal(got.astype(np.float32), want)
