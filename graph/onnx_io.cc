#include "graph/onnx_io.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>

#include <fstream>

#include "util/atomic_file.h"
#include "util/error.h"

namespace sparse24 {
namespace fs = std::filesystem;
using onnx::TensorProto;

namespace {

// Bytes per element of an ONNX element type; 0 where the size is not fixed or not known here.
size_t onnx_elem_size(int32_t type) {
  switch (type) {
    case TensorProto::FLOAT:
    case TensorProto::INT32:
    case TensorProto::UINT32:
      return 4;
    case TensorProto::UINT8:
    case TensorProto::INT8:
    case TensorProto::BOOL:
      return 1;
    case TensorProto::UINT16:
    case TensorProto::INT16:
    case TensorProto::FLOAT16:
    case TensorProto::BFLOAT16:
      return 2;
    case TensorProto::INT64:
    case TensorProto::UINT64:
    case TensorProto::DOUBLE:
    case TensorProto::COMPLEX64:
      return 8;
    case TensorProto::COMPLEX128:
      return 16;
    default:
      return 0;
  }
}

int64_t numel_of(const TensorProto& t) {
  int64_t n = 1;
  for (int64_t d : t.dims()) n *= d;
  return n;
}

// Elements held in the typed field an element type uses (ONNX stores small types widened in int32_data).
int64_t typed_count(const TensorProto& t) {
  switch (t.data_type()) {
    case TensorProto::FLOAT:
      return t.float_data_size();
    case TensorProto::COMPLEX64:
      return t.float_data_size() / 2;
    case TensorProto::DOUBLE:
      return t.double_data_size();
    case TensorProto::COMPLEX128:
      return t.double_data_size() / 2;
    case TensorProto::INT64:
      return t.int64_data_size();
    case TensorProto::UINT32:
    case TensorProto::UINT64:
      return t.uint64_data_size();
    case TensorProto::STRING:
      return t.string_data_size();
    default:
      return t.int32_data_size();
  }
}

bool is_external(const TensorProto& t) {
  return t.data_location() == TensorProto::EXTERNAL;
}

void validate_tensor(const TensorProto& t, const fs::path& file) {
  int64_t n = 1;
  for (int64_t d : t.dims()) {
    if (d < 0) fail("'{}': tensor '{}' has a negative dimension", file.string(), t.name());
    n *= d;
  }
  if (is_external(t)) return;
  size_t es = onnx_elem_size(t.data_type());
  if (t.has_raw_data()) {
    if (es && t.raw_data().size() != size_t(n) * es)
      fail("'{}': tensor '{}' holds {} bytes, its shape needs {} (truncated or corrupted file?)",
           file.string(), t.name(), t.raw_data().size(), size_t(n) * es);
  } else if (es && typed_count(t) != n) {
    fail("'{}': tensor '{}' holds {} elements, its shape needs {} (truncated or corrupted file?)",
         file.string(), t.name(), typed_count(t), n);
  }
}

void load_external(TensorProto& t, const fs::path& model_dir, const fs::path& file) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (const auto& kv : t.external_data()) {
    if (kv.key() == "location")
      location = kv.value();
    else if (kv.key() == "offset")
      offset = std::stoll(kv.value());
    else if (kv.key() == "length")
      length = std::stoll(kv.value());
  }
  fs::path rel(location);
  if (location.empty() || rel.is_absolute() || std::find(rel.begin(), rel.end(), "..") != rel.end())
    fail("'{}': tensor '{}' has an invalid external data location '{}'", file.string(), t.name(), location);
  fs::path data_path = model_dir / rel;
  size_t need = size_t(numel_of(t)) * onnx_elem_size(t.data_type());
  if (length < 0) length = int64_t(need);
  if (onnx_elem_size(t.data_type()) && size_t(length) != need)
    fail("'{}': tensor '{}' external length {} does not match its shape ({} bytes)", file.string(), t.name(),
         length, need);
  std::ifstream in(data_path, std::ios::binary);
  if (!in)
    fail("'{}': external data file '{}' of tensor '{}' is missing", file.string(), data_path.string(),
         t.name());
  std::string bytes(size_t(length), '\0');
  in.seekg(offset);
  if (!in.read(bytes.data(), length))
    fail("'{}': external data file '{}' is too short for tensor '{}'", file.string(), data_path.string(),
         t.name());
  t.clear_external_data();
  t.set_data_location(TensorProto::DEFAULT);
  t.set_raw_data(std::move(bytes));
}

}  // namespace

std::optional<DType> dtype_from_onnx(int32_t type) {
  switch (type) {
    case TensorProto::FLOAT:
      return DType::f32;
    case TensorProto::FLOAT16:
      return DType::f16;
    case TensorProto::BFLOAT16:
      return DType::bf16;
    case TensorProto::INT8:
      return DType::i8;
    case TensorProto::INT32:
      return DType::i32;
    case TensorProto::INT64:
      return DType::i64;
    case TensorProto::BOOL:
      return DType::boolean;
    default:
      return std::nullopt;
  }
}

std::string onnx_type_name(int32_t type) {
  return TensorProto::DataType_IsValid(type) ? TensorProto::DataType_Name(TensorProto::DataType(type))
                                             : fmt::format("type {}", type);
}

OnnxModel load_onnx(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("'{}': no such file", path.string());
  if (fs::is_directory(path, ec)) fail("'{}' is a folder, not an ONNX file", path.string());
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("'{}': cannot open for reading", path.string());
  OnnxModel m;
  m.path = path;
  google::protobuf::io::IstreamInputStream raw(&in);
  google::protobuf::io::CodedInputStream coded(&raw);
  coded.SetTotalBytesLimit(INT32_MAX);
  if (!m.proto.ParseFromCodedStream(&coded) || !coded.ConsumedEntireMessage())
    fail("'{}' is not a valid ONNX model: protobuf parsing failed (truncated or corrupted file?)",
         path.string());
  if (m.proto.ir_version() <= 0 || !m.proto.has_graph())
    fail("'{}' is not an ONNX model: it has no IR version or no graph", path.string());
  fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  for (TensorProto& t : *m.proto.mutable_graph()->mutable_initializer()) {
    if (is_external(t)) {
      load_external(t, dir, path);
      m.external_tensors.insert(t.name());
    }
    validate_tensor(t, path);
  }
  return m;
}

void save_onnx(const OnnxModel& model, const fs::path& path) {
  const onnx::ModelProto* out = &model.proto;
  onnx::ModelProto with_external;
  if (!model.external_tensors.empty()) {
    // Move the tensors that came from external data out again, into one file beside the model.
    with_external = model.proto;
    fs::path data_name = path.filename().string() + ".data";
    fs::path data_path = path.has_parent_path() ? path.parent_path() / data_name : data_name;
    std::vector<TensorProto*> moved;
    for (TensorProto& t : *with_external.mutable_graph()->mutable_initializer())
      if (model.external_tensors.count(t.name())) moved.push_back(&t);
    write_file_atomically(data_path, [&](std::ostream& os) {
      int64_t offset = 0;
      for (TensorProto* t : moved) {
        const std::string& bytes = t->raw_data();
        os.write(bytes.data(), std::streamsize(bytes.size()));
        auto add = [&](const char* k, const std::string& v) {
          auto* e = t->add_external_data();
          e->set_key(k);
          e->set_value(v);
        };
        add("location", data_name.string());
        add("offset", std::to_string(offset));
        add("length", std::to_string(bytes.size()));
        offset += int64_t(bytes.size());
        t->clear_raw_data();
        t->set_data_location(TensorProto::EXTERNAL);
      }
    });
    out = &with_external;
  }
  write_file_atomically(path, [&](std::ostream& os) {
    if (!out->SerializeToOstream(&os)) fail("cannot write '{}': serialization failed", path.string());
  });
}

Tensor read_tensor(const TensorProto& t) {
  auto dt = dtype_from_onnx(t.data_type());
  if (!dt) fail("tensor '{}': element type {} is not supported", t.name(), onnx_type_name(t.data_type()));
  std::vector<int64_t> shape(t.dims().begin(), t.dims().end());
  Tensor out(*dt, shape);
  const int64_t n = out.numel();
  if (t.has_raw_data()) {
    if (t.raw_data().size() != out.nbytes())
      fail("tensor '{}': raw data size does not match its shape", t.name());
    if (n > 0) std::memcpy(out.bytes(), t.raw_data().data(), out.nbytes());  // empty: null storage
  } else if (*dt == DType::f32) {
    if (t.float_data_size() != n) fail("tensor '{}': float_data size does not match its shape", t.name());
    if (n > 0) std::memcpy(out.bytes(), t.float_data().data(), out.nbytes());
  } else if (*dt == DType::i64) {
    if (t.int64_data_size() != n) fail("tensor '{}': int64_data size does not match its shape", t.name());
    if (n > 0) std::memcpy(out.bytes(), t.int64_data().data(), out.nbytes());
  } else {
    if (t.int32_data_size() != n) fail("tensor '{}': int32_data size does not match its shape", t.name());
    for (int64_t i = 0; i < n; ++i) {
      int32_t v = t.int32_data(int(i));
      switch (*dt) {
        case DType::f16:
        case DType::bf16:
          out.data<uint16_t>()[i] = uint16_t(v);
          break;
        case DType::i8:
          out.data<int8_t>()[i] = int8_t(v);
          break;
        case DType::boolean:
          out.data<uint8_t>()[i] = v != 0;
          break;
        default:
          out.data<int32_t>()[i] = v;
          break;
      }
    }
  }
  return out;
}

void write_tensor(TensorProto& t, const Tensor& value) {
  auto dt = dtype_from_onnx(t.data_type());
  if (!dt || *dt != value.dtype() ||
      !std::equal(t.dims().begin(), t.dims().end(), value.shape().begin(), value.shape().end()))
    fail("tensor '{}': new data must keep its element type and shape", t.name());
  const int64_t n = value.numel();
  if (t.has_raw_data()) {
    t.set_raw_data(std::string(reinterpret_cast<const char*>(value.bytes()), value.nbytes()));
  } else if (*dt == DType::f32) {
    t.mutable_float_data()->Assign(value.data<float>(), value.data<float>() + n);
  } else if (*dt == DType::i64) {
    t.mutable_int64_data()->Assign(value.data<int64_t>(), value.data<int64_t>() + n);
  } else {
    auto* f = t.mutable_int32_data();
    for (int64_t i = 0; i < n; ++i) {
      switch (*dt) {
        case DType::f16:
        case DType::bf16:
          f->Set(int(i), value.data<uint16_t>()[i]);
          break;
        case DType::i8:
          f->Set(int(i), value.data<int8_t>()[i]);
          break;
        case DType::boolean:
          f->Set(int(i), value.data<uint8_t>()[i]);
          break;
        default:
          f->Set(int(i), value.data<int32_t>()[i]);
          break;
      }
    }
  }
}

const TensorProto* find_initializer(const onnx::GraphProto& g, const std::string& name) {
  for (const TensorProto& t : g.initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

TensorProto* find_initializer(onnx::GraphProto& g, const std::string& name) {
  for (TensorProto& t : *g.mutable_initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

}  // namespace sparse24
