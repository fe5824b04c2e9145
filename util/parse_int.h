#pragma once
// One positive integer from a whole string (a CLI option's value, an environment variable), or one clear
// error naming where it came from.
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "util/error.h"

namespace sparse24 {

/// `s` as a positive decimal integer; throws Error "{what}: '{s}' is not a positive integer" when any of it
/// is not a digit (after an optional sign and leading blanks, as strtoll reads), it is 0 or negative, or it
/// does not fit in 64 bits.
inline int64_t parse_positive_int(const std::string& s, const char* what) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (end == s.c_str() || *end != '\0' || errno == ERANGE || v < 1)
    fail("{}: '{}' is not a positive integer", what, s);
  return v;
}

}  // namespace sparse24
