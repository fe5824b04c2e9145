"""Bad input to build / run / bench: one clear line on stderr, exit status 1, nothing written."""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper

import models
from test_errors import assert_user_error


def save(model, path):
    onnx.save(model, str(path))
    return path


def mlp_path(tmp_path):
    return save(models.mlp(sizes=(8, 4, 2)), tmp_path / "mlp.onnx")


def npy(tmp_path, name, array):
    np.save(tmp_path / name, array)
    return tmp_path / name


def test_unsupported_op_names_the_node(sparse24, tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    m = helper.make_model(helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"], name="the_hardmax")], "g", [x],
                                            [y]), opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = save(m, tmp_path / "m.onnx")
    for cmd in (["build", path, "-o", tmp_path / "m.plan"], ["bench", path],
                ["run", path, "--input", f"x={npy(tmp_path, 'x.npy', np.zeros((2, 3), np.float32))}", "-o",
                 tmp_path / "out"]):
        assert_user_error(sparse24(*cmd, check=False), "the_hardmax", "Hardmax", "not supported")
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "x.npy"]


def test_mismatched_shapes(sparse24, tmp_path):
    path = mlp_path(tmp_path)
    bad = npy(tmp_path, "x.npy", np.zeros((1, 7), np.float32))
    assert_user_error(sparse24("run", path, "--input", f"pixels={bad}", "-o", tmp_path / "out", check=False),
                      "pixels", "[1, 7]")
    # Shapes that only clash inside the graph: the op names its node.
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    m = helper.make_model(helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"], name="the_add")], "g", [a, b],
                                            [y]), opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    p = sparse24("run", save(m, tmp_path / "add.onnx"), "--input", f"a={npy(tmp_path, 'a.npy', np.zeros((2, 3), np.float32))}",
                 "--input", f"b={npy(tmp_path, 'b.npy', np.zeros(4, np.float32))}", "-o", tmp_path / "out", check=False)
    assert_user_error(p, "the_add")
    assert not (tmp_path / "out").exists()


def test_wrong_input_name_or_dtype(sparse24, tmp_path):
    path = mlp_path(tmp_path)
    good = npy(tmp_path, "x.npy", np.zeros((1, 8), np.float32))
    assert_user_error(sparse24("run", path, "--input", f"image={good}", "-o", tmp_path / "out", check=False),
                      "'image' is not an input", "pixels")
    ints = npy(tmp_path, "i.npy", np.zeros((1, 8), np.int64))
    assert_user_error(sparse24("run", path, "--input", f"pixels={ints}", "-o", tmp_path / "out", check=False),
                      "pixels", "i64", "f32")
    f64 = npy(tmp_path, "d.npy", np.zeros((1, 8), np.float64))
    assert_user_error(sparse24("run", path, "--input", f"pixels={f64}", "-o", tmp_path / "out", check=False), "<f8")
    assert_user_error(sparse24("run", path, "-o", tmp_path / "out", "--input", "pixels", check=False), "NAME=FILE")
    assert_user_error(sparse24("run", path, "--input", f"pixels={tmp_path / 'nope.npy'}", "-o", tmp_path / "out",
                               check=False), "nope.npy")
    assert not (tmp_path / "out").exists()


def test_corrupted_truncated_and_foreign_plans(sparse24, tmp_path):
    path = mlp_path(tmp_path)
    plan = tmp_path / "m.plan"
    sparse24("build", path, "-o", plan, "--sparsity", "force")
    data = plan.read_bytes()
    x = npy(tmp_path, "x.npy", np.zeros((1, 8), np.float32))
    run = lambda p, env=None: sparse24("run", p, "--input", f"pixels={x}", "-o", tmp_path / "out", check=False)

    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    (tmp_path / "flipped.plan").write_bytes(bytes(flipped))
    assert_user_error(run(tmp_path / "flipped.plan"), "flipped.plan", "checksum")
    (tmp_path / "short.plan").write_bytes(data[: len(data) - 100])
    assert_user_error(run(tmp_path / "short.plan"), "short.plan", "truncated")
    (tmp_path / "head.plan").write_bytes(data[:20])
    assert_user_error(run(tmp_path / "head.plan"), "head.plan")
    newer = bytearray(data)
    newer[8] = 99  # format version
    (tmp_path / "newer.plan").write_bytes(bytes(newer))
    assert_user_error(run(tmp_path / "newer.plan"), "version 99")
    assert not (tmp_path / "out").exists()


def test_plan_built_for_another_isa(sparse24, tmp_path, monkeypatch):
    path = mlp_path(tmp_path)
    plan = tmp_path / "m.plan"
    p = sparse24("build", path, "-o", plan)
    isa = p.stdout.split("ISA ")[1].split(",")[0]
    if isa == "ref":
        import pytest
        pytest.skip("this CPU has neither AVX2 nor AVX-512: every plan is built for the portable kernels")
    x = npy(tmp_path, "x.npy", np.zeros((1, 8), np.float32))
    monkeypatch.setenv("SPARSE24_ISA", "ref")  # a machine that can only run the portable kernels
    assert_user_error(sparse24("run", plan, "--input", f"pixels={x}", "-o", tmp_path / "out", check=False),
                      f"built for ISA {isa}", "rebuild")
    assert not (tmp_path / "out").exists()


def test_bad_engine_options(sparse24, tmp_path):
    path = mlp_path(tmp_path)
    assert_user_error(sparse24("bench", path, "--sparsity", "sometimes", check=False), "--sparsity")
    assert_user_error(sparse24("bench", path, "--batch", "0", check=False), "--batch")
    assert_user_error(sparse24("build", path, "-o", path, check=False), "refusing to overwrite")
    (tmp_path / "file").write_text("x")
    assert_user_error(sparse24("run", path, "--input", f"pixels={npy(tmp_path, 'x.npy', np.zeros((1, 8), np.float32))}",
                               "-o", tmp_path / "file", check=False), "not a folder")
