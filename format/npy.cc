#include "format/npy.h"

#include <fstream>
#include <regex>

#include "util/atomic_file.h"
#include "util/error.h"

namespace sparse24 {

size_t NpyArray::item_size() const {
  size_t n = 0;
  for (size_t i = 2; i < descr.size(); ++i) n = n * 10 + size_t(descr[i] - '0');
  return n;
}

Tensor NpyArray::to_tensor() const {
  DType t;
  if (descr == "<f4")
    t = DType::f32;
  else if (descr == "<f2")
    t = DType::f16;
  else if (descr == "|i1" || descr == "<i1")
    t = DType::i8;
  else if (descr == "<i4")
    t = DType::i32;
  else if (descr == "<i8")
    t = DType::i64;
  else if (descr == "|b1")
    t = DType::boolean;
  else
    fail("unsupported .npy element type '{}' (float32, float16, int8, int32, int64 or bool)", descr);
  Tensor out(t, shape);
  std::memcpy(out.bytes(), data.data(), out.nbytes());
  return out;
}

NpyArray read_npy(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '{}': no such file or not readable", path.string());
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    fail("'{}' is not a .npy file (bad magic)", path.string());
  uint32_t header_len = 0;
  unsigned char lenb[4] = {0, 0, 0, 0};
  int nlen = magic[6] == 1 ? 2 : 4;
  if (!in.read(reinterpret_cast<char*>(lenb), nlen)) fail("'{}': truncated .npy header", path.string());
  for (int i = 0; i < nlen; ++i) header_len |= uint32_t(lenb[i]) << (8 * i);
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) fail("'{}': truncated .npy header", path.string());

  static const std::regex descr_re(R"('descr'\s*:\s*'([^']*)')");
  static const std::regex order_re(R"('fortran_order'\s*:\s*(True|False))");
  static const std::regex shape_re(R"('shape'\s*:\s*\(([^)]*)\))");
  std::smatch m;
  NpyArray a;
  if (!std::regex_search(header, m, descr_re)) fail("'{}': .npy header has no descr", path.string());
  a.descr = m[1];
  if (a.descr.size() < 3 || (a.descr[0] != '<' && a.descr[0] != '|'))
    fail("'{}': element type '{}' is not little-endian", path.string(), a.descr);
  if (!std::regex_search(header, m, order_re)) fail("'{}': .npy header has no fortran_order", path.string());
  if (m[1] == "True")
    fail("'{}': Fortran-ordered arrays are not supported (save with C order)", path.string());
  if (!std::regex_search(header, m, shape_re)) fail("'{}': .npy header has no shape", path.string());
  std::string dims = m[1];
  static const std::regex int_re(R"(\d+)");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), int_re); it != std::sregex_iterator(); ++it)
    a.shape.push_back(std::stoll(it->str()));
  size_t bytes = size_t(shape_numel(a.shape)) * a.item_size();
  a.data.resize(bytes);
  if (!in.read(reinterpret_cast<char*>(a.data.data()), std::streamsize(bytes)))
    fail("'{}': truncated .npy data (expected {} bytes)", path.string(), bytes);
  return a;
}

void write_npy(const std::filesystem::path& path, const Tensor& t) {
  const char* descr = "";
  switch (t.dtype()) {
    case DType::f32:
      descr = "<f4";
      break;
    case DType::f16:
      descr = "<f2";
      break;
    case DType::bf16:
      descr = "<u2";
      break;
    case DType::i8:
      descr = "|i1";
      break;
    case DType::i32:
      descr = "<i4";
      break;
    case DType::i64:
      descr = "<i8";
      break;
    case DType::boolean:
      descr = "|b1";
      break;
  }
  std::string dims;
  for (int64_t d : t.shape()) dims += std::to_string(d) + ", ";
  if (t.rank() > 1) dims.resize(dims.size() - 2);
  std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", descr, dims);
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  write_file_atomically(path, [&](std::ostream& out) {
    out.write("\x93NUMPY\x01\x00", 8);
    uint16_t len = uint16_t(header.size());
    char lenb[2] = {char(len & 0xff), char(len >> 8)};
    out.write(lenb, 2);
    out.write(header.data(), std::streamsize(header.size()));
    out.write(reinterpret_cast<const char*>(t.bytes()), std::streamsize(t.nbytes()));
  });
}

}  // namespace sparse24
