#include "train/data.h"

#include <zlib.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include "format/npy.h"
#include "util/error.h"

namespace sparse24::train {

namespace fs = std::filesystem;

int64_t Dataset::features() const {
  return shape_numel(sample_shape);
}

namespace {

// ---- idx (gzip) ----------------------------------------------------------------------------------------

std::vector<uint8_t> read_gzip(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    fail(
        "dataset file '{}' not found (Fashion-MNIST comes with Debian's dataset-fashion-mnist; or pass "
        "--data)",
        path.string());
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) fail("cannot open '{}'", path.string());
  std::vector<uint8_t> out;
  uint8_t chunk[1 << 16];
  int n;
  while ((n = gzread(f, chunk, sizeof chunk)) > 0) out.insert(out.end(), chunk, chunk + n);
  int err = 0;
  const char* msg = gzerror(f, &err);
  const bool bad = n < 0 || (err != Z_OK && err != Z_STREAM_END);
  const std::string reason = bad ? msg : "";
  gzclose(f);
  if (bad) fail("'{}' is not a readable gzip file: {}", path.string(), reason);
  return out;
}

uint32_t be32(const std::vector<uint8_t>& b, size_t off) {
  return uint32_t(b[off]) << 24 | uint32_t(b[off + 1]) << 16 | uint32_t(b[off + 2]) << 8 |
         uint32_t(b[off + 3]);
}

Dataset load_idx(const fs::path& dir, Split split, const std::string& name) {
  const std::string prefix = split == Split::train ? "train" : "t10k";
  const fs::path images_path = dir / (prefix + "-images-idx3-ubyte.gz");
  const fs::path labels_path = dir / (prefix + "-labels-idx1-ubyte.gz");
  const std::vector<uint8_t> images = read_gzip(images_path), labels = read_gzip(labels_path);
  if (images.size() < 16 || be32(images, 0) != 0x803)
    fail("'{}' is not an idx3 image file (magic 0x00000803)", images_path.string());
  if (labels.size() < 8 || be32(labels, 0) != 0x801)
    fail("'{}' is not an idx1 label file (magic 0x00000801)", labels_path.string());
  const int64_t count = be32(images, 4), rows = be32(images, 8), cols = be32(images, 12);
  const int64_t nlabels = be32(labels, 4);
  if (int64_t(images.size()) != 16 + count * rows * cols)
    fail("'{}' is truncated: {} bytes for {} images of {}x{}", images_path.string(), images.size(), count,
         rows, cols);
  if (int64_t(labels.size()) != 8 + nlabels) fail("'{}' is truncated", labels_path.string());
  if (count != nlabels)
    fail("'{}' holds {} images but '{}' holds {} labels", images_path.string(), count, labels_path.string(),
         nlabels);
  Dataset d;
  d.source = name + (split == Split::train ? " train" : " test");
  d.sample_shape = {1, rows, cols};
  d.images.resize(size_t(count * rows * cols));
  for (size_t i = 0; i < d.images.size(); ++i) d.images[i] = float(images[16 + i]) / 255.0f;
  d.labels.assign(labels.begin() + 8, labels.end());
  return d;
}

// ---- .npz (zip of .npy) --------------------------------------------------------------------------------

uint32_t le(const std::string& b, size_t off, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = v << 8 | uint8_t(b[off + size_t(i)]);
  return v;
}

std::string read_all(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail("dataset file '{}' not found", path.string());
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open '{}'", path.string());
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// The members of a zip archive (stored or deflated), by name.
std::map<std::string, std::string> read_zip(const fs::path& path) {
  const std::string z = read_all(path);
  size_t eocd = std::string::npos;
  for (size_t i = z.size() >= 22 ? z.size() - 22 : 0; i != std::string::npos && i + 22 <= z.size(); --i) {
    if (le(z, i, 4) == 0x06054b50) {
      eocd = i;
      break;
    }
    if (i == 0 || z.size() - i > 22 + 65535) break;
  }
  if (eocd == std::string::npos) fail("'{}' is not a .npz (zip) file", path.string());
  const uint32_t entries = le(z, eocd + 10, 2), dir_offset = le(z, eocd + 16, 4);
  std::map<std::string, std::string> members;
  size_t p = dir_offset;
  for (uint32_t e = 0; e < entries; ++e) {
    if (p + 46 > z.size() || le(z, p, 4) != 0x02014b50) fail("'{}': broken zip directory", path.string());
    const uint32_t method = le(z, p + 10, 2), csize = le(z, p + 20, 4), usize = le(z, p + 24, 4);
    const uint32_t name_len = le(z, p + 28, 2), extra_len = le(z, p + 30, 2), comment_len = le(z, p + 32, 2);
    const uint32_t local = le(z, p + 42, 4);
    const std::string name = z.substr(p + 46, name_len);
    p += 46 + name_len + extra_len + comment_len;
    if (csize == 0xffffffffu || usize == 0xffffffffu || local == 0xffffffffu)
      fail("'{}': member '{}' is a zip64 entry (over 4 GiB), which is not supported", path.string(), name);
    if (size_t(local) + 30 > z.size() || le(z, local, 4) != 0x04034b50)
      fail("'{}': broken zip entry '{}'", path.string(), name);
    const size_t data = local + 30 + le(z, local + 26, 2) + le(z, local + 28, 2);
    if (data + csize > z.size()) fail("'{}' is truncated (member '{}')", path.string(), name);
    std::string out;
    if (method == 0) {
      out = z.substr(data, csize);
    } else if (method == 8) {  // raw deflate (np.savez_compressed)
      out.resize(usize);
      z_stream s{};
      if (inflateInit2(&s, -MAX_WBITS) != Z_OK) fail("zlib: inflateInit2 failed");
      s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(z.data() + data));
      s.avail_in = csize;
      s.next_out = reinterpret_cast<Bytef*>(out.data());
      s.avail_out = usize;
      const int rc = inflate(&s, Z_FINISH);
      inflateEnd(&s);
      if (rc != Z_STREAM_END || s.total_out != usize)
        fail("'{}': member '{}' does not inflate", path.string(), name);
    } else {
      fail("'{}': member '{}' uses zip compression method {} (stored and deflate are supported)",
           path.string(), name, method);
    }
    members[name] = std::move(out);
  }
  return members;
}

// Parses an in-memory .npy: the type string, the shape and the raw data.
NpyArray parse_npy(const std::string& b, const std::string& what) {
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) fail("{} is not a .npy array", what);
  const int major = uint8_t(b[6]);
  const size_t header_len = major == 1 ? le(b, 8, 2) : le(b, 8, 4), start = major == 1 ? 10 : 12;
  if (start + header_len > b.size()) fail("{}: truncated .npy header", what);
  const std::string h = b.substr(start, header_len);
  auto field = [&](const std::string& key) {
    const size_t k = h.find("'" + key + "'");
    if (k == std::string::npos) fail("{}: .npy header lacks '{}'", what, key);
    return h.substr(h.find(':', k) + 1);
  };
  NpyArray a;
  const std::string descr = field("descr");
  const size_t q0 = descr.find('\''), q1 = descr.find('\'', q0 + 1);
  a.descr = descr.substr(q0 + 1, q1 - q0 - 1);
  if (field("fortran_order").find("True") < field("fortran_order").find(','))
    fail("{}: Fortran-order arrays are not supported", what);
  const std::string shape = field("shape");
  const std::string dims = shape.substr(shape.find('(') + 1, shape.find(')') - shape.find('(') - 1);
  size_t pos = 0;
  while (pos < dims.size()) {
    const size_t comma = dims.find(',', pos);
    const std::string tok = dims.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (tok.find_first_of("0123456789") != std::string::npos) a.shape.push_back(std::stoll(tok));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  const size_t bytes = size_t(shape_numel(a.shape)) * a.item_size();
  if (start + header_len + bytes > b.size()) fail("{}: truncated .npy data", what);
  a.data.resize(bytes);
  std::memcpy(a.data.data(), b.data() + start + header_len, bytes);
  return a;
}

Dataset from_arrays(const NpyArray& images, const NpyArray& labels, const std::string& source) {
  Dataset d;
  d.source = source;
  if (images.shape.size() < 2)
    fail("{}: images have shape {}, expected [N, ...]", source, shape_str(images.shape));
  if (labels.shape.size() != 1)
    fail("{}: labels have shape {}, expected [N]", source, shape_str(labels.shape));
  const int64_t count = images.shape[0];
  if (labels.shape[0] != count)
    fail("{}: {} images but {} labels (the counts must match)", source, count, labels.shape[0]);
  d.sample_shape.assign(images.shape.begin() + 1, images.shape.end());
  const size_t n = size_t(shape_numel(images.shape));
  d.images.resize(n);
  if (images.descr == "<f4") {
    std::memcpy(d.images.data(), images.data.data(), n * 4);
    for (size_t i = 0; i < n; ++i)
      if (!(d.images[i] >= 0.0f && d.images[i] <= 1.0f))
        fail("{}: pixel {} of image {} is {}; images must be float32 in [0, 1]", source,
             int64_t(i) % d.features(), int64_t(i) / d.features(), d.images[i]);
  } else if (images.descr == "|u1") {
    for (size_t i = 0; i < n; ++i) d.images[i] = float(uint8_t(images.data[i])) / 255.0f;
  } else {
    fail("{}: images have dtype '{}'; float32 in [0, 1] or uint8 are supported", source, images.descr);
  }
  const Tensor l = labels.to_tensor();
  if (l.dtype() == DType::f32 || l.dtype() == DType::f16 || l.dtype() == DType::boolean)
    fail("{}: labels have dtype '{}'; an integer type (int64) is expected", source, labels.descr);
  d.labels.resize(size_t(count));
  for (int64_t i = 0; i < count; ++i) {
    d.labels[size_t(i)] = l.dtype() == DType::i64 ? l.data<int64_t>()[i] : int64_t(l.get(i));
    if (d.labels[size_t(i)] < 0) fail("{}: label {} of image {} is negative", source, d.labels[size_t(i)], i);
  }
  return d;
}

}  // namespace

Dataset load_dataset(const std::string& spec, Split split, const std::string& labels_npy, int64_t limit) {
  Dataset d;
  const fs::path path = spec == "fashion-mnist" ? fs::path(kFashionMnistDir) : fs::path(spec);
  std::error_code ec;
  if (spec == "fashion-mnist" || fs::is_directory(path, ec)) {
    if (!labels_npy.empty()) fail("--labels goes with an images .npy, not with '{}'", spec);
    d = load_idx(path, split, spec == "fashion-mnist" ? "fashion-mnist" : path.string());
  } else if (path.extension() == ".npz") {
    if (!labels_npy.empty()) fail("--labels goes with an images .npy; '{}' holds its own labels", spec);
    std::map<std::string, std::string> members = read_zip(path);
    for (const char* key : {"images.npy", "labels.npy"})
      if (!members.count(key))
        fail("'{}' has no array '{}' (it needs 'images' and 'labels')", spec, std::string(key, 6));
    d = from_arrays(parse_npy(members["images.npy"], spec + ": images"),
                    parse_npy(members["labels.npy"], spec + ": labels"), spec);
  } else if (path.extension() == ".npy") {
    if (labels_npy.empty()) fail("'{}' holds images only: pass the labels .npy with --labels", spec);
    if (!fs::is_regular_file(path, ec)) fail("dataset file '{}' not found", spec);
    d = from_arrays(read_npy(path), read_npy(labels_npy), spec);
  } else if (!fs::exists(path, ec)) {
    fail("dataset '{}' not found (expected fashion-mnist, an idx folder, a .npz or an images .npy)", spec);
  } else {
    fail("dataset '{}': expected fashion-mnist, an idx folder, a .npz or an images .npy", spec);
  }
  if (limit > 0 && limit < d.size()) {
    d.labels.resize(size_t(limit));
    d.images.resize(size_t(limit * d.features()));
  }
  if (d.size() == 0) fail("dataset '{}' holds no images", d.source);
  return d;
}

void check_labels(const Dataset& data, int64_t classes) {
  for (int64_t i = 0; i < data.size(); ++i)
    if (data.labels[size_t(i)] >= classes)
      fail("{}: label {} of image {} is out of range: the model has {} classes (labels 0..{})", data.source,
           data.labels[size_t(i)], i, classes, classes - 1);
}

std::pair<double, double> pixel_statistics(const Dataset& data) {
  double sum = 0, sq = 0;
  for (float v : data.images) sum += v;
  const double mean = sum / double(data.images.size());
  for (float v : data.images) sq += (v - mean) * (v - mean);
  return {mean, std::sqrt(sq / double(data.images.size()))};
}

}  // namespace sparse24::train
