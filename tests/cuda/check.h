#pragma once
// A minimal test harness for the CUDA backend's tests, which build without GoogleTest (scripts/gpu_check.sh's
// machine has only the CUDA toolkit). CHECK records a failure and goes on; main returns test_exit_code().
#include <cstdio>
#include <string>

namespace sparse24::test {

inline int& failures() {
  static int n = 0;
  return n;
}
/// Exit status ctest reads as "skipped" (SKIP_RETURN_CODE).
inline constexpr int kSkipped = 77;
/// 0 when every CHECK held, 1 otherwise (and a summary line).
inline int test_exit_code(const char* suite) {
  if (failures())
    std::printf("%s: %d check(s) FAILED\n", suite, failures());
  else
    std::printf("%s: all checks passed\n", suite);
  return failures() ? 1 : 0;
}

}  // namespace sparse24::test

/// Records a failure (with file:line, the condition and a message built with printf arguments) unless cond.
#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    if (!(cond)) {                                                         \
      ++::sparse24::test::failures();                                      \
      std::printf("%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                                            \
      std::printf("\n");                                                   \
    }                                                                      \
  } while (0)
