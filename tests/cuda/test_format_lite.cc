// The error formatting of the CUDA-only build (util/format_lite.h, used instead of {fmt} there):
// placeholders, hexadecimal, escapes, small integers printed as numbers, and fail() throwing sparse24::Error
// with the text.
#include <cstdint>
#include <string>

#include "check.h"
#include "util/error.h"
#include "util/format_lite.h"

using sparse24::format_lite;

int main() {
  CHECK(format_lite("no placeholders") == "no placeholders", "plain text changed");
  CHECK(format_lite("{} x {}", 3, int64_t(40)) == "3 x 40", "got '%s'",
        format_lite("{} x {}", 3, int64_t(40)).c_str());
  CHECK(format_lite("nibble 0x{:x}", uint8_t(0xe)) == "nibble 0xe", "got '%s'",
        format_lite("nibble 0x{:x}", uint8_t(0xe)).c_str());
  CHECK(format_lite("{{'descr': '{}'}}", std::string("<f4")) == "{'descr': '<f4'}", "got '%s'",
        format_lite("{{'descr': '{}'}}", std::string("<f4")).c_str());
  CHECK(format_lite("{} then {}", "a") == "a then {}", "a missing argument leaves its placeholder: got '%s'",
        format_lite("{} then {}", "a").c_str());
  CHECK(format_lite("{:x} {}", 255, 255) == "ff 255", "hex must not stick: got '%s'",
        format_lite("{:x} {}", 255, 255).c_str());
#if defined(SPARSE24_NO_FMT)
  std::string message;
  try {
    sparse24::fail("{}: row {} group {}", "w", 2, 7);
  } catch (const sparse24::Error& e) {
    message = e.what();
  }
  CHECK(message == "w: row 2 group 7", "fail() threw '%s'", message.c_str());
#endif
  return sparse24::test::test_exit_code("test_format_lite");
}
