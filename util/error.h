#pragma once
// Errors the user can act on. The library throws sparse24::Error; the CLI prints its message as one line
// and exits 1. Internal invariants use assert, never this.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace sparse24 {

/// A user-facing error: the message names the file, tensor or option and says what is wrong.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// Throws Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace sparse24
