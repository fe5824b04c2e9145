"""Every model.onnx in Debian's libonnx-testdata loads through graph/ and, saved unchanged, passes onnx's
checker and is identical in graph and tensors."""
import glob
import os
import subprocess

import onnx
import pytest

DATA = "/usr/share/libonnx-testdata/data/node"
TOOL = os.environ.get("SPARSE24_ONNX_ROUNDTRIP", "")


def test_libonnx_testdata_roundtrip(tmp_path):
    models = sorted(glob.glob(os.path.join(DATA, "*", "model.onnx")))
    assert len(models) > 900, f"libonnx-testdata not found under {DATA} (apt-get install libonnx-testdata)"
    assert os.access(TOOL, os.X_OK), "SPARSE24_ONNX_ROUNDTRIP must name the onnx_roundtrip test tool"
    outs = [tmp_path / f"{os.path.basename(os.path.dirname(m))}.onnx" for m in models]
    args = [str(a) for pair in zip(models, outs) for a in pair]
    p = subprocess.run([TOOL, *args], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    for src, out in zip(models, outs):
        saved = onnx.load(str(out))
        onnx.checker.check_model(saved, full_check=False)
        assert saved == onnx.load(src), f"{src}: saved model differs from the original"
    print(f"{len(models)} models round-tripped")


def test_external_data_roundtrip(tmp_path):
    import numpy as np
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.arange(64, dtype=np.float32).reshape(8, 8), "W")
    b = numpy_helper.from_array(np.arange(8, dtype=np.float32), "b")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "W", "b"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8])], [w, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    src = tmp_path / "in" / "m.onnx"
    src.parent.mkdir()
    onnx.save(m, str(src), save_as_external_data=True, location="weights.bin", size_threshold=0)
    out = tmp_path / "m2.onnx"
    subprocess.run([TOOL, str(src), str(out)], check=True)
    assert onnx.load(str(out)) == onnx.load(str(src))
    # The external file is missing: a clear error, not a crash.
    os.remove(tmp_path / "in" / "weights.bin")
    p = subprocess.run([TOOL, str(src), str(tmp_path / "m3.onnx")], capture_output=True, text=True)
    assert p.returncode == 1 and "external data file" in p.stderr
