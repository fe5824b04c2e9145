"""tools/compare_ort.py: onnxruntime and sparse24 on the same model and inputs, in alternating rounds."""
import json
import os
import subprocess
import sys

import onnx

import models
from conftest import SPARSE24

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "compare_ort.py")


def compare(model, tmp_path, *extra):
    out = tmp_path / "compare.json"
    p = subprocess.run([sys.executable, TOOL, str(model), "--batch", "2", "--threads", "1", "--sparse24", SPARSE24,
                        "--json", str(out), *map(str, extra)], capture_output=True, text=True, timeout=300)
    return p, out


def test_reports_every_round_and_the_outputs_agree(sparse24, tmp_path):
    model = tmp_path / "mlp.onnx"
    onnx.save(models.mlp(sizes=(64, 32, 10)), str(model))
    p, out = compare(model, tmp_path, "--rounds", 2, "--seconds", 0.05)
    assert p.returncode == 0, p.stderr
    row = json.load(open(out))
    assert row["rounds"] == 2
    for key in ("ort_rounds_ms", "sparse24_rounds_ms", "sparse24_dense_rounds_ms"):
        assert len(row[key]) == 2 and all(ms > 0 for ms in row[key]), key
    # Each figure is the median of its rounds (of two: their mean), and the ratios are of those figures.
    assert abs(row["ort_ms"] - sum(row["ort_rounds_ms"]) / 2) < 1e-12
    assert abs(row["sparse24_ms"] - sum(row["sparse24_rounds_ms"]) / 2) < 1e-12
    assert abs(row["ratio_vs_ort"] - row["sparse24_ms"] / row["ort_ms"]) < 1e-12
    assert row["max_rel_err"] < 1e-4
    assert "2 alternating rounds" in p.stdout and "onnxruntime" in p.stdout


def test_bad_rounds_are_one_clear_error(tmp_path):
    model = tmp_path / "mlp.onnx"
    onnx.save(models.mlp(sizes=(64, 32, 10)), str(model))
    p, out = compare(model, tmp_path, "--rounds", 0)
    assert p.returncode != 0
    assert "--rounds must be at least 1" in p.stderr
    assert not out.exists()
