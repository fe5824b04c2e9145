#pragma once
// Which x86 instruction sets the CPU and the OS let the kernels use, found once at run time.
#include <cstdint>
#include <string_view>

namespace sparse24::cpu {

/// Instruction-set levels the kernels are written for, lowest first.
enum class Isa : uint8_t {
  ref,     ///< portable C++, no intrinsics
  avx2,    ///< AVX2 + FMA
  avx512,  ///< AVX-512 F/BW/VL/DQ + VNNI + VBMI
};

/// "ref", "avx2", "avx512".
std::string_view isa_name(Isa isa);
/// Parses an ISA name; throws Error on anything else.
Isa parse_isa(std::string_view name);

/// The best level this CPU and OS support (CPUID feature bits and XSAVE-enabled register state).
Isa detect_cpu_isa();
/// True when the CPU can run kernels of this level.
bool cpu_supports(Isa isa);
/// The level the dispatcher uses: detect_cpu_isa(), or SPARSE24_ISA=ref|avx2|avx512 when set. Throws Error
/// when SPARSE24_ISA names a level this CPU cannot run or an unknown level.
Isa active_isa();

/// Bytes of L1 data cache per core, which sizes the panel GEMM's K blocks (panel_block_groups): what the OS
/// reports (sysconf), 32 KiB where it reports nothing, or SPARSE24_L1D_BYTES when set (so the tests can run
/// the blocks of another CPU's cache). Read once. Throws Error when SPARSE24_L1D_BYTES is not a whole number
/// of bytes from 4 KiB to 4 MiB.
int64_t l1d_bytes();

}  // namespace sparse24::cpu
