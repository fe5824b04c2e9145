#include "kernels/cpu/isa.h"

#include <cpuid.h>
#include <unistd.h>

#include <cstdlib>

#include "util/error.h"
#include "util/parse_int.h"

namespace sparse24::cpu {

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::ref:
      return "ref";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
  }
  return "?";
}

Isa parse_isa(std::string_view name) {
  for (Isa i : {Isa::ref, Isa::avx2, Isa::avx512})
    if (isa_name(i) == name) return i;
  fail("unknown ISA '{}': expected ref, avx2 or avx512", name);
}

namespace {

uint64_t read_xcr0() {
  uint32_t lo, hi;
  // xgetbv with ecx=0: the register state the OS saves on context switch.
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

Isa probe() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Isa::ref;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
  if (!osxsave || !avx) return Isa::ref;
  const uint64_t xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;    // SSE + AVX state
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;  // plus opmask, ZMM_Hi256, Hi16_ZMM
  if (!os_ymm || __get_cpuid_max(0, nullptr) < 7) return Isa::ref;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5);
  const bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
  const bool vbmi = c & (1u << 1), vnni = c & (1u << 11);
  if (!avx2 || !fma) return Isa::ref;
  if (os_zmm && f && dq && bw && vl && vbmi && vnni) return Isa::avx512;
  return Isa::avx2;
}

}  // namespace

Isa detect_cpu_isa() {
  static const Isa isa = probe();
  return isa;
}

bool cpu_supports(Isa isa) {
  return uint8_t(isa) <= uint8_t(detect_cpu_isa());
}

Isa active_isa() {
  const char* forced = std::getenv("SPARSE24_ISA");
  if (!forced || !*forced) return detect_cpu_isa();
  Isa isa = parse_isa(forced);
  if (!cpu_supports(isa))
    fail("SPARSE24_ISA={} but this CPU supports at most {}", forced, isa_name(detect_cpu_isa()));
  return isa;
}

namespace {

int64_t probe_l1d() {
  if (const char* forced = std::getenv("SPARSE24_L1D_BYTES"); forced && *forced) {
    const int64_t bytes = parse_positive_int(forced, "SPARSE24_L1D_BYTES");
    if (bytes < (4 << 10) || bytes > (4 << 20))
      fail("SPARSE24_L1D_BYTES={}: expected a whole number of bytes from 4096 to 4194304", forced);
    return bytes;
  }
  const long reported = sysconf(_SC_LEVEL1_DCACHE_SIZE);
  return reported >= (4 << 10) && reported <= (4 << 20) ? reported : 32 << 10;
}

}  // namespace

int64_t l1d_bytes() {
  static const int64_t bytes = probe_l1d();
  return bytes;
}

}  // namespace sparse24::cpu
