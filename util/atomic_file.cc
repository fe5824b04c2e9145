#include "util/atomic_file.h"

#include <unistd.h>

#include <fstream>

#include "util/error.h"

namespace sparse24 {
namespace fs = std::filesystem;

void write_file_atomically(const fs::path& path, const std::function<void(std::ostream&)>& write) {
  fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  fs::path tmp = dir / fmt::format(".{}.tmp.{}", path.filename().string(), ::getpid());
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) fail("cannot write '{}': cannot create a file in '{}'", path.string(), dir.string());
      write(out);
      out.flush();
      if (!out) fail("cannot write '{}': write failed (disk full?)", path.string());
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) fail("cannot write '{}': {}", path.string(), ec.message());
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

void check_output_path(const fs::path& in, const fs::path& out) {
  std::error_code ec;
  if (fs::exists(out, ec) && fs::equivalent(in, out, ec))
    fail("refusing to overwrite the input '{}': choose another output path", in.string());
  if (fs::weakly_canonical(in, ec) == fs::weakly_canonical(out, ec))
    fail("refusing to overwrite the input '{}': choose another output path", in.string());
  fs::path dir = out.has_parent_path() ? out.parent_path() : fs::path(".");
  if (!fs::is_directory(dir, ec))
    fail("cannot write '{}': folder '{}' does not exist", out.string(), dir.string());
  if (::access(dir.c_str(), W_OK) != 0)
    fail("cannot write '{}': folder '{}' is not writable", out.string(), dir.string());
}

}  // namespace sparse24
