#pragma once
// Errors the user can act on. The library throws sparse24::Error; the CLI prints its message as one line
// and exits 1. Internal invariants use assert, never this.
#if defined(SPARSE24_NO_FMT)
#include "util/format_lite.h"
#else
#include <fmt/format.h>
#endif

#include <stdexcept>
#include <string>

namespace sparse24 {

/// A user-facing error: the message names the file, tensor or option and says what is wrong.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

#if defined(SPARSE24_NO_FMT)
/// Throws Error with a message formatted by format_lite (`{}` placeholders, as with {fmt}).
template <typename... Args>
[[noreturn]] void fail(std::string_view f, const Args&... args) {
  throw Error(format_lite(f, args...));
}
#else
/// Throws Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}
#endif

}  // namespace sparse24
