"""Shared fixtures for the CLI tests: the sparse24 binary, a runner, and ONNX model builders."""
import os
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

SPARSE24 = os.environ.get("SPARSE24", os.path.join(os.path.dirname(__file__), "../../build/sparse24"))


@pytest.fixture(scope="session")
def sparse24():
    assert os.access(SPARSE24, os.X_OK), f"sparse24 binary not found at {SPARSE24}: build first"

    def run(*args, check=True):
        p = subprocess.run([SPARSE24, *map(str, args)], capture_output=True, text=True, timeout=300)
        if check and p.returncode != 0:
            raise AssertionError(f"sparse24 {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
        return p

    return run


def save_model(nodes, inits, inputs, outputs, path, external=False):
    g = helper.make_graph(nodes, "test", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    if external:
        onnx.save(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=os.path.basename(path) + ".bin", size_threshold=0)
    else:
        onnx.save(m, str(path))
    return m


def float_init(rng, name, shape):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def value_info(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
