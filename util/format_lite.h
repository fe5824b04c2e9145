#pragma once
// A dependency-free stand-in for the small part of {fmt} that error messages use: `{}` and `{:x}`
// placeholders, `{{` and `}}` escapes. Only the CUDA-only build (SPARSE24_NO_FMT, for machines without
// {fmt}) uses it; the normal build formats with {fmt}.
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

namespace sparse24 {

namespace format_lite_detail {

template <typename T>
void put(std::ostringstream& os, const T& v, bool hex) {
  if (hex) os << std::hex;
  // Small integers (uint8_t, char-sized enums of bytes) print as numbers, as {fmt} does.
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool> && sizeof(T) < sizeof(int))
    os << int(v);
  else
    os << v;
  if (hex) os << std::dec;
}

inline void format_rest(std::ostringstream& os, std::string_view f) {
  for (size_t i = 0; i < f.size(); ++i) {
    if ((f[i] == '{' || f[i] == '}') && i + 1 < f.size() && f[i + 1] == f[i]) ++i;
    os << f[i];
  }
}

template <typename T, typename... Rest>
void format_rest(std::ostringstream& os, std::string_view f, const T& first, const Rest&... rest) {
  for (size_t i = 0; i < f.size(); ++i) {
    if ((f[i] == '{' || f[i] == '}') && i + 1 < f.size() && f[i + 1] == f[i]) {
      os << f[i++];
      continue;
    }
    if (f[i] == '{') {
      size_t close = f.find('}', i);
      if (close == std::string_view::npos) break;
      put(os, first, f.substr(i, close - i + 1) == "{:x}");
      format_rest(os, f.substr(close + 1), rest...);
      return;
    }
    os << f[i];
  }
}

}  // namespace format_lite_detail

/// Replaces each `{}` (or `{:x}`, hexadecimal) in `f` with the next argument, streamed.
template <typename... Args>
std::string format_lite(std::string_view f, const Args&... args) {
  std::ostringstream os;
  format_lite_detail::format_rest(os, f, args...);
  return os.str();
}

}  // namespace sparse24
