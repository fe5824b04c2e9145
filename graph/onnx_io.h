#pragma once
// ONNX files in and out through the official protobuf classes (Debian's libonnx-dev). Tensors stored as
// external data are read in on load and written back out as external data on save; everything sparse24
// does not touch is written back unchanged.
#include <onnx/onnx_pb.h>

#include <filesystem>
#include <optional>
#include <set>
#include <string>

#include "format/tensor.h"

namespace sparse24 {

/// A loaded ONNX model: the protobuf plus what is needed to save it faithfully.
struct OnnxModel {
  onnx::ModelProto proto;
  std::filesystem::path path;              ///< the file it was loaded from
  std::set<std::string> external_tensors;  ///< initializers that were external data (now inline in proto)
};

/// Loads and validates a model; throws Error naming the file on anything missing, malformed or truncated.
OnnxModel load_onnx(const std::filesystem::path& path);

/// Saves atomically. Tensors that came from external data go to "<path>.data" beside it.
void save_onnx(const OnnxModel& model, const std::filesystem::path& path);

/// The sparse24 dtype of an ONNX element type, or nullopt when it has none.
std::optional<DType> dtype_from_onnx(int32_t onnx_type);
/// The ONNX element type name ("FLOAT", "INT64", ...).
std::string onnx_type_name(int32_t onnx_type);

/// An initializer's data as a Tensor (any dtype of format/dtype.h); throws Error for other element types.
Tensor read_tensor(const onnx::TensorProto& t);
/// Replaces an initializer's data, keeping its storage kind (raw_data or typed field), dtype and dims.
void write_tensor(onnx::TensorProto& t, const Tensor& value);

/// The graph initializer with this name, or null.
const onnx::TensorProto* find_initializer(const onnx::GraphProto& g, const std::string& name);
onnx::TensorProto* find_initializer(onnx::GraphProto& g, const std::string& name);

}  // namespace sparse24
