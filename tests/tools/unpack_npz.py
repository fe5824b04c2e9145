"""Unpacks an .npz into one .npy per array, so that C++ tests can read them with format/npy.h."""
import os
import sys

import numpy as np

src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
with np.load(src) as z:
    for name in z.files:
        np.save(os.path.join(dst, name + ".npy"), np.ascontiguousarray(z[name]))
print(f"unpacked {len(z.files)} arrays into {dst}")
