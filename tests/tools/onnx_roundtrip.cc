// Test tool: loads every ONNX file named on the command line (IN OUT pairs) through graph/ and saves it
// unchanged, so that a test can compare the two with the onnx package. Prints one line per failure.
#include <fmt/format.h>

#include "graph/onnx_io.h"
#include "util/error.h"

int main(int argc, char** argv) {
  if (argc < 3 || argc % 2 != 1) {
    fmt::print(stderr, "usage: onnx_roundtrip IN.onnx OUT.onnx [IN OUT ...]\n");
    return 2;
  }
  int failures = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    try {
      sparse24::save_onnx(sparse24::load_onnx(argv[i]), argv[i + 1]);
    } catch (const sparse24::Error& e) {
      fmt::print(stderr, "{}: {}\n", argv[i], e.what());
      ++failures;
    }
  }
  return failures ? 1 : 0;
}
