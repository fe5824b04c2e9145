#pragma once
// NumPy .npy files (format versions 1-3, little-endian, C order): how users hand tensors to the CLI and
// how tests exchange arrays with Python.
#include <filesystem>
#include <string>
#include <vector>

#include "format/tensor.h"

namespace sparse24 {

/// An array exactly as stored: NumPy type string ("<f4", "<i2", "|i1", ...), shape and raw bytes.
struct NpyArray {
  std::string descr;
  std::vector<int64_t> shape;
  std::vector<std::byte> data;
  /// Bytes per element of descr.
  size_t item_size() const;
  /// As a Tensor when descr is float32, float16, int8, int32, int64 or bool; throws Error otherwise.
  /// (bfloat16 has no NumPy type: callers reinterpret '<u2'/'<i2' bits themselves.)
  Tensor to_tensor() const;
};

/// Reads a .npy file; throws Error naming the file on anything malformed or big-endian.
NpyArray read_npy(const std::filesystem::path& path);

/// Writes a tensor as .npy (bf16 as '<u2' bits), atomically.
void write_npy(const std::filesystem::path& path, const Tensor& t);

}  // namespace sparse24
