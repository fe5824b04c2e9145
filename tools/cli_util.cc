#include "tools/cli_util.h"

#include <fmt/format.h>

#include <cmath>

#include "util/atomic_file.h"

namespace sparse24::cli {

static bool looks_numeric(const std::string& s) {
  return s == "-" ||
         (!s.empty() && (std::isdigit(static_cast<unsigned char>(s[0])) || (s[0] == '-' && s.size() > 1)));
}

void Table::print(std::FILE* out) const {
  std::vector<size_t> width(header_.size(), 0);
  auto widen = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) width[i] = std::max(width[i], row[i].size());
  };
  widen(header_);
  for (const auto& r : rows_) widen(r);
  widen(footer_);
  auto line = [&](const std::vector<std::string>& row) {
    std::string s;
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      if (i) s += "  ";
      bool right = looks_numeric(row[i]);
      s += right ? fmt::format("{:>{}}", row[i], width[i]) : fmt::format("{:<{}}", row[i], width[i]);
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    fmt::print(out, "{}\n", s);
  };
  size_t total = 0;
  for (size_t w : width) total += w + 2;
  line(header_);
  fmt::print(out, "{}\n", std::string(total - 2, '-'));
  for (const auto& r : rows_) line(r);
  if (!footer_.empty()) {
    fmt::print(out, "{}\n", std::string(total - 2, '-'));
    line(footer_);
  }
}

std::string human_bytes(double b) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.1f} {}", b, unit[u]);
}

std::string human_count(double n) {
  if (n >= 1e9) return fmt::format("{:.2f}G", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.2f}M", n / 1e6);
  if (n >= 1e3) return fmt::format("{:.1f}k", n / 1e3);
  return fmt::format("{:.0f}", n);
}

void write_json(const std::filesystem::path& path, const nlohmann::json& j) {
  write_file_atomically(path, [&](std::ostream& os) { os << j.dump(2) << "\n"; });
}

}  // namespace sparse24::cli
