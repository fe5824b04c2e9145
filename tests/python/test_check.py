"""`sparse24 check`: eligibility with reasons, 2:4 fractions and sizes, against numpy's own count."""
import json

import numpy as np
import onnx
from onnx import helper, numpy_helper

from conftest import float_init, save_model, value_info


def test_check_report(sparse24, tmp_path):
    rng = np.random.default_rng(3)
    w_half = rng.standard_normal((12, 8)).astype(np.float32)  # MatMul B [K=12][N=8]
    w_half[0:2, :] = 0  # groups along K: rows 0..3 of B form group 0 of every column -> that group conforms
    inits = [
        numpy_helper.from_array(w_half, "W_half"),
        float_init(rng, "W_small_ic", (4, 2, 3, 3)),
        float_init(rng, "W_k6", (6, 8)),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "W_half"], ["a"], name="mm"),
        helper.make_node("MatMul", ["a", "W_k6"], ["b"], name="k6"),  # wrong shapes for a runtime, fine for check
        helper.make_node("Conv", ["img", "W_small_ic"], ["c"], name="conv_small"),
        helper.make_node("MatMul", ["x", "x_t"], ["d"], name="act_matmul"),
    ]
    g = helper.make_graph(nodes, "t", [value_info("x", [1, 12]), value_info("img", [1, 2, 5, 5]),
                                       value_info("x_t", [12, 3])],
                          [value_info("b", None), value_info("c", None), value_info("d", None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(m, str(tmp_path / "m.onnx"))

    p = sparse24("check", tmp_path / "m.onnx", "--json", tmp_path / "c.json")
    assert "total: 4 layers" in p.stdout
    report = json.loads((tmp_path / "c.json").read_text())
    rows = {r["node"]: r for r in report["layers"]}
    assert rows["mm"]["eligible"] and (rows["mm"]["n"], rows["mm"]["k"]) == (8, 12)
    groups = w_half.T.reshape(-1, 4)
    assert rows["mm"]["fraction_24"] == ((groups == 0).sum(axis=1) >= 2).mean() == 1 / 3
    assert rows["mm"]["params"] == 96 and rows["mm"]["dense_bytes"] == 384
    assert rows["mm"]["compressed_bytes"] == 8 * 6 * 2 + 8 * 12 // 8  # f16 values + 4 bits per group
    assert rows["k6"]["reason"] == "K % 4 != 0 (K = 6)"
    assert rows["conv_small"]["reason"] == "IC/g < 4 (IC/g = 2)"
    assert rows["act_matmul"]["reason"] == "weight not an initializer"
    assert report["totals"]["eligible"] == 1 and report["totals"]["layers"] == 4
