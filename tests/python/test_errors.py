"""Bad input: one clear line on stderr, exit status 1, nothing written, inputs untouched."""
import os

import numpy as np
import pytest
from onnx import helper, numpy_helper

from conftest import float_init, save_model, value_info


def small_model(path, w=None):
    rng = np.random.default_rng(0)
    w = float_init(rng, "W", (8, 4)) if w is None else numpy_helper.from_array(w, "W")
    save_model([helper.make_node("MatMul", ["x", "W"], ["y"], name="fc")], [w], [value_info("x", [1, 8])],
               [value_info("y", [1, 4])], path)


def assert_user_error(p, *needles):
    assert p.returncode == 1, f"exit {p.returncode}, stderr: {p.stderr}"
    lines = p.stderr.strip().splitlines()
    assert lines and lines[0].startswith("sparse24: error:"), p.stderr
    assert len([l for l in lines if not l.startswith("Run with --help")]) == 1, p.stderr
    for n in needles:
        assert n in p.stderr, f"{n!r} not in {p.stderr!r}"


def assert_dir_holds(d, names):
    assert sorted(os.listdir(d)) == sorted(names), "stray files (partial output or temporaries) left behind"


@pytest.mark.parametrize("cmd", ["check", "prune"])
def test_missing_file(sparse24, tmp_path, cmd):
    extra = ["-o", tmp_path / "o.onnx"] if cmd == "prune" else []
    assert_user_error(sparse24(cmd, tmp_path / "nope.onnx", *extra, check=False), "nope.onnx", "no such file")
    assert_dir_holds(tmp_path, [])


@pytest.mark.parametrize("content", [b"hello, this is not a model\n", b"\x00\x01\x02" * 100, b""],
                         ids=["text", "binary", "empty"])
def test_not_onnx(sparse24, tmp_path, content):
    (tmp_path / "bad.onnx").write_bytes(content)
    assert_user_error(sparse24("prune", tmp_path / "bad.onnx", "-o", tmp_path / "o.onnx", check=False), "bad.onnx")
    assert_user_error(sparse24("check", tmp_path / "bad.onnx", check=False), "bad.onnx")
    assert_dir_holds(tmp_path, ["bad.onnx"])


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_truncated_onnx(sparse24, tmp_path, fraction):
    small_model(tmp_path / "m.onnx")
    data = (tmp_path / "m.onnx").read_bytes()
    (tmp_path / "t.onnx").write_bytes(data[: int(len(data) * fraction)])
    assert_user_error(sparse24("prune", tmp_path / "t.onnx", "-o", tmp_path / "o.onnx", check=False), "t.onnx")
    assert_dir_holds(tmp_path, ["m.onnx", "t.onnx"])


def test_no_eligible_layer(sparse24, tmp_path):
    rng = np.random.default_rng(0)
    save_model([helper.make_node("MatMul", ["x", "W"], ["y"], name="fc")], [float_init(rng, "W", (6, 4))],
               [value_info("x", [1, 6])], [value_info("y", [1, 4])], tmp_path / "m.onnx")
    assert_user_error(sparse24("prune", tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", check=False),
                      "no eligible layer", "K % 4 != 0")
    assert_dir_holds(tmp_path, ["m.onnx"])


def test_include_selects_nothing(sparse24, tmp_path):
    small_model(tmp_path / "m.onnx")
    assert_user_error(sparse24("prune", tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--include", "^zzz",
                               check=False), "no eligible layer", "--include")
    assert_dir_holds(tmp_path, ["m.onnx"])


@pytest.mark.parametrize("spelling", ["same", "dot"])
def test_output_equal_to_input_refused(sparse24, tmp_path, spelling):
    small_model(tmp_path / "m.onnx")
    before = (tmp_path / "m.onnx").read_bytes()
    out = tmp_path / "m.onnx" if spelling == "same" else tmp_path / "." / "m.onnx"
    assert_user_error(sparse24("prune", tmp_path / "m.onnx", "-o", out, check=False), "refusing to overwrite")
    assert (tmp_path / "m.onnx").read_bytes() == before
    assert_dir_holds(tmp_path, ["m.onnx"])


@pytest.mark.parametrize("out", ["/nonexistent-dir/o.onnx", "/proc/sparse24-test.onnx"], ids=["no_dir", "proc"])
def test_unwritable_output(sparse24, tmp_path, out):
    small_model(tmp_path / "m.onnx")
    assert_user_error(sparse24("prune", tmp_path / "m.onnx", "-o", out, check=False), "cannot write")
    assert not os.path.exists(out)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_nan_or_inf_weight_refused(sparse24, tmp_path, bad):
    w = np.ones((8, 4), np.float32)
    w[5, 2] = bad
    small_model(tmp_path / "m.onnx", w)
    assert_user_error(sparse24("prune", tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", check=False), "'W'",
                      "NaN or Inf")
    assert_user_error(sparse24("check", tmp_path / "m.onnx", check=False), "'W'")
    assert_dir_holds(tmp_path, ["m.onnx"])


def test_bad_options(sparse24, tmp_path):
    small_model(tmp_path / "m.onnx")
    assert_user_error(sparse24("prune", tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--include", "(",
                               check=False), "--include")
    assert_user_error(sparse24("prune", tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--method", "wanda",
                               check=False), "unknown pruning method")
    assert_user_error(sparse24("prune", tmp_path / "m.onnx", check=False), "--output")
    assert_user_error(sparse24("frobnicate", check=False))
    assert_dir_holds(tmp_path, ["m.onnx"])


def test_help_everywhere(sparse24):
    for args in ([], ["check"], ["prune"]):
        p = sparse24(*args, "--help")
        assert p.returncode == 0 and "Usage" in p.stdout


@pytest.mark.parametrize("value", ["lots", "1024", "48k"])
def test_bad_l1_override(sparse24, monkeypatch, value):
    monkeypatch.setenv("SPARSE24_L1D_BYTES", value)
    assert_user_error(sparse24("bench", "gemm", "--m", "64", "--shapes", "64x64", "--threads", "1",
                               "--min-seconds", "0", check=False), "SPARSE24_L1D_BYTES")
