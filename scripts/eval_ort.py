"""Accuracy of an ONNX classifier on the Fashion-MNIST test set (10,000 images) through onnxruntime: the
independent check of what `sparse24 eval` reports. Prints one JSON object."""
import argparse
import gzip
import json

import numpy as np
import onnxruntime as ort

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("model")
parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
parser.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
args = parser.parse_args()


def idx(path, offset):
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


images = idx(f"{args.data}/t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28 * 28).astype(np.float32) / 255.0
labels = idx(f"{args.data}/t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
if args.limit:
    images, labels = images[: args.limit], labels[: args.limit]
session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
inp = session.get_inputs()[0]
x = images.reshape(-1, 1, 28, 28) if len(inp.shape) == 4 else images
logits = session.run(None, {inp.name: x})[0]
correct = int((logits.argmax(axis=1) == labels).sum())
print(json.dumps({"model": args.model, "images": len(labels), "correct": correct, "accuracy": correct / len(labels)}))
