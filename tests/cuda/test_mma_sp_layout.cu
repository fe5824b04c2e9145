// Measures on the GPU how mma.sp distributes its sparse operand and metadata over the lanes of a warp, and
// compares that with the model the packer and the kernels are built on (kernels/cuda/sp24_layout.h,
// tests/cuda/test_sp24_pack.cc): each probe runs one mma.sp on one warp with a single marked value or
// metadata nibble and reads back which output row moved and by how much. A failure names the lane, register
// and element (or metadata nibble) whose place differs — the place to fix, should the model be wrong. Without
// a CUDA device: "no CUDA device: skipped", exit 77.
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "check.h"
#include "format/dtype.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/mma_sp.cuh"
#include "kernels/cuda/sp24_layout.h"

using namespace sparse24;
using namespace sparse24::cuda;

namespace {

// One warp, one mma.sp with C = 0: lane l reads its A, B registers and metadata word from a[l], b[l], e[l]
// and writes its four accumulators to d[l].
template <class Op, int Sel>
__global__ void probe_kernel(const uint4* a, const uint4* b, const uint32_t* e, typename Op::Acc* d) {
  const int lane = threadIdx.x;
  const uint4 bv = b[lane];
  const uint32_t breg[4] = {bv.x, bv.y, bv.z, bv.w};
  typename Op::Acc acc[4] = {};
  Op::template mma<Sel>(acc, a[lane], breg, e[lane]);
  for (int i = 0; i < 4; ++i) d[lane * 4 + i] = acc[i];
}

// Host side of one probe. Logical operands: A compressed [16][C] (C = 16 for f16, 32 for i8), X [8][K] (the B
// operand by rows n, K = 32 or 64), e[32] metadata words. Returns D[16][8] as doubles.
// Who answers a probe: the GPU, or (to test this test without one) a host emulation of mma.sp that either
// follows the model exactly or departs from it (A registers 1 and 2 swapped, metadata lanes t and t^1
// swapped).
enum class Hardware { gpu, emulated_model, emulated_perturbed };

struct Probe {
  bool int8;
  int selector;
  Hardware hardware = Hardware::gpu;
  int k() const { return int8 ? 64 : 32; }
  int c() const { return k() / 2; }
  int elem() const { return int8 ? 1 : 2; }

  std::vector<double> run(const std::vector<int>& a, const std::vector<int>& x,
                          const std::vector<uint32_t>& e) const {
    // Registers from the logical operands with the fragment maps under test (A) and the standard B map:
    // register i of lane (g, t) holds bytes 16·i + 4·t.. of X row g.
    std::vector<uint8_t> a_bytes(32 * 16), b_bytes(32 * 16);
    for (int lane = 0; lane < 32; ++lane)
      for (int reg = 0; reg < 4; ++reg) {
        const Sp24FragmentSource src = sp24_fragment_source(lane, reg);
        for (int v = 0; v < 4 / elem(); ++v) {
          put(a_bytes.data() + lane * 16 + reg * 4 + v * elem(), a[src.row * c() + src.byte / elem() + v]);
          const int k = (16 * reg + 4 * (lane % 4)) / elem() + v;
          put(b_bytes.data() + lane * 16 + reg * 4 + v * elem(), x[(lane / 4) * this->k() + k]);
        }
      }
    if (hardware != Hardware::gpu) return emulate(a_bytes, b_bytes, e);
    uint4 *da, *db;
    uint32_t* de;
    void* dd;
    S24_CUDA_CHECK(cudaMalloc(&da, 512));
    S24_CUDA_CHECK(cudaMalloc(&db, 512));
    S24_CUDA_CHECK(cudaMalloc(&de, 128));
    S24_CUDA_CHECK(cudaMalloc(&dd, 512));
    S24_CUDA_CHECK(cudaMemcpy(da, a_bytes.data(), 512, cudaMemcpyHostToDevice));
    S24_CUDA_CHECK(cudaMemcpy(db, b_bytes.data(), 512, cudaMemcpyHostToDevice));
    S24_CUDA_CHECK(cudaMemcpy(de, e.data(), 128, cudaMemcpyHostToDevice));
    if (int8)
      probe_kernel<OpI8, 0><<<1, 32>>>(da, db, de, static_cast<int*>(dd));
    else if (selector == 0)
      probe_kernel<OpF16, 0><<<1, 32>>>(da, db, de, static_cast<float*>(dd));
    else
      probe_kernel<OpF16, 1><<<1, 32>>>(da, db, de, static_cast<float*>(dd));
    S24_CUDA_CHECK(cudaGetLastError());
    std::vector<uint8_t> d_bytes(512);
    S24_CUDA_CHECK(cudaMemcpy(d_bytes.data(), dd, 512, cudaMemcpyDeviceToHost));
    cudaFree(da), cudaFree(db), cudaFree(de), cudaFree(dd);
    // Standard accumulator map: register r of lane (g, t) is D[g + 8·(r/2)][2t + r%2].
    std::vector<double> d(16 * 8);
    for (int lane = 0; lane < 32; ++lane)
      for (int r = 0; r < 4; ++r) {
        double v;
        if (int8) {
          int32_t i;
          std::memcpy(&i, d_bytes.data() + (lane * 4 + r) * 4, 4);
          v = i;
        } else {
          float f;
          std::memcpy(&f, d_bytes.data() + (lane * 4 + r) * 4, 4);
          v = f;
        }
        d[(lane / 4 + 8 * (r / 2)) * 8 + 2 * (lane % 4) + r % 2] = v;
      }
    return d;
  }

  // mma.sp on the host, from the registers, placing operands the way `hardware` says the GPU does.
  std::vector<double> emulate(const std::vector<uint8_t>& a_bytes, const std::vector<uint8_t>& b_bytes,
                              const std::vector<uint32_t>& e) const {
    const bool perturbed = hardware == Hardware::emulated_perturbed;
    std::vector<double> a(16 * c()), x(8 * k()), d(16 * 8, 0.0);
    for (int lane = 0; lane < 32; ++lane)
      for (int reg = 0; reg < 4; ++reg) {
        const int placed = perturbed && (reg == 1 || reg == 2) ? 3 - reg : reg;
        const Sp24FragmentSource src = sp24_fragment_source(lane, placed);
        for (int v = 0; v < 4 / elem(); ++v) {
          a[src.row * c() + src.byte / elem() + v] = get(a_bytes.data() + lane * 16 + reg * 4 + v * elem());
          x[(lane / 4) * k() + (16 * reg + 4 * (lane % 4)) / elem() + v] =
              get(b_bytes.data() + lane * 16 + reg * 4 + v * elem());
        }
      }
    for (int r = 0; r < 16; ++r)
      for (int q = 0; q < k() / 4; ++q) {
        Sp24MetaSlot slot = sp24_meta_slot(int8, selector, r, q);
        if (perturbed) slot.lane ^= 1;
        const int nib = int(e[slot.lane] >> slot.bit) & 0xf;
        for (int n = 0; n < 8; ++n)
          for (int j = 0; j < 2; ++j)
            d[r * 8 + n] += a[r * c() + 2 * q + j] * x[n * k() + 4 * q + ((nib >> (2 * j)) & 3)];
      }
    return d;
  }

  double get(const uint8_t* at) const {
    if (int8) return double(int8_t(*at));
    uint16_t h;
    std::memcpy(&h, at, 2);
    return f16_to_f32(h);
  }

  void put(uint8_t* at, int v) const {
    if (int8) {
      const int8_t i = int8_t(v);
      std::memcpy(at, &i, 1);
    } else {
      const uint16_t h = f32_to_f16(float(v));  // small integers: exact
      std::memcpy(at, &h, 2);
    }
  }

  // The metadata map under test, inverted: which (row, group) nibble `slot` of lane's word governs, or
  // (-1, -1) when the lane supplies no metadata for this selector.
  std::pair<int, int> meta_target(int lane, int slot) const {
    for (int r = 0; r < 16; ++r)
      for (int q = 0; q < k() / 4; ++q) {
        const Sp24MetaSlot s = sp24_meta_slot(int8, selector, r, q);
        if (s.lane == lane && s.bit == 4 * slot) return {r, q};
      }
    return {-1, -1};
  }
};

std::string name(const Probe& p) {
  return p.int8 ? "i8 m16n8k64" : "f16 m16n8k32 selector " + std::to_string(p.selector);
}

// Marks one metadata nibble at a time (0x4 = kept positions 0,1 everywhere else; the marked one 0xE = 2,3)
// with A values q+1 in group q and X[n][k] = k: the governed row's output grows by 4·(q+1), naming row and
// group.
int probe_metadata(const Probe& p) {
  std::vector<int> a(16 * p.c()), x(8 * p.k());
  for (int r = 0; r < 16; ++r)
    for (int j = 0; j < p.c(); ++j) a[r * p.c() + j] = j / 2 + 1;
  for (int n = 0; n < 8; ++n)
    for (int k = 0; k < p.k(); ++k) x[n * p.k() + k] = k;
  const std::vector<uint32_t> base(32, 0x44444444u);
  const std::vector<double> d0 = p.run(a, x, base);
  int wrong = 0;
  for (int lane = 0; lane < 32; ++lane)
    for (int slot = 0; slot < 8; ++slot) {
      std::vector<uint32_t> e = base;
      e[lane] = (e[lane] & ~(0xfu << (4 * slot))) | (0xeu << (4 * slot));
      const std::vector<double> d = p.run(a, x, e);
      int row = -1, group = -1, rows_moved = 0;
      for (int r = 0; r < 16; ++r) {
        const double delta = d[r * 8] - d0[r * 8];
        if (delta != 0) {
          ++rows_moved;
          row = r;
          group = int(delta / 4) - 1;
        }
      }
      const auto [want_row, want_group] = p.meta_target(lane, slot);
      const bool ok = rows_moved <= 1 && row == want_row && group == want_group;
      if (!ok && wrong++ < 8)
        std::printf(
            "%s: metadata lane %d nibble %d governs row %d group %d (%d rows moved); model: row %d group "
            "%d\n",
            name(p).c_str(), lane, slot, row, group, rows_moved, want_row, want_group);
    }
  return wrong;
}

// Marks one A element at a time (value 1, metadata 0x4 everywhere: compressed column j sits at K position
// 4·(j/2) + j%2) with X[n][k] = k+1: the row that moves and the value it takes name the element's place.
int probe_a_fragment(const Probe& p) {
  std::vector<int> x(8 * p.k());
  for (int n = 0; n < 8; ++n)
    for (int k = 0; k < p.k(); ++k) x[n * p.k() + k] = k + 1;
  const std::vector<uint32_t> e(32, 0x44444444u);
  int wrong = 0;
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 4; ++reg)
      for (int v = 0; v < 4 / p.elem(); ++v) {
        // The element the model says this register slot holds, set through the logical A.
        const Sp24FragmentSource src = sp24_fragment_source(lane, reg);
        const int want_row = src.row, want_col = src.byte / p.elem() + v;
        std::vector<int> a(16 * p.c(), 0);
        a[want_row * p.c() + want_col] = 1;
        const std::vector<double> d = p.run(a, x, e);
        int row = -1, rows_moved = 0;
        double value = 0;
        for (int r = 0; r < 16; ++r)
          if (d[r * 8] != 0) ++rows_moved, row = r, value = d[r * 8];
        const int want_k = 4 * (want_col / 2) + want_col % 2;
        const bool ok = rows_moved == 1 && row == want_row && value == want_k + 1;
        if (!ok && wrong++ < 8)
          std::printf(
              "%s: A lane %d register %d element %d lands in row %d at K %g (%d rows moved); model: row %d K "
              "%d\n",
              name(p).c_str(), lane, reg, v, row, value - 1, rows_moved, want_row, want_k);
      }
  return wrong;
}

}  // namespace

int main(int argc, char** argv) {
  // --emulated: check this test itself on the host — the probes must find nothing wrong with an emulated
  // mma.sp that follows the model, and must find the departures of one that does not.
  if (argc > 1 && std::string(argv[1]) == "--emulated") {
    for (Probe p : {Probe{false, 0}, Probe{false, 1}, Probe{true, 0}}) {
      p.hardware = Hardware::emulated_model;
      CHECK(probe_a_fragment(p) == 0, "%s: A probe fails on a model-exact emulation", name(p).c_str());
      CHECK(probe_metadata(p) == 0, "%s: metadata probe fails on a model-exact emulation", name(p).c_str());
      p.hardware = Hardware::emulated_perturbed;
      CHECK(probe_a_fragment(p) > 0, "%s: A probe misses swapped registers", name(p).c_str());
      CHECK(probe_metadata(p) > 0, "%s: metadata probe misses swapped lanes", name(p).c_str());
    }
    return test::test_exit_code("test_mma_sp_layout --emulated");
  }
  std::string why;
  if (!cuda_device_available(&why)) {
    std::printf("no CUDA device: skipped (%s)\n", why.c_str());
    return test::kSkipped;
  }
  try {
    for (Probe p : {Probe{false, 0}, Probe{false, 1}, Probe{true, 0}}) {
      const int wrong_a = probe_a_fragment(p), wrong_meta = probe_metadata(p);
      CHECK(wrong_a == 0, "%s: %d A elements are not where sp24_fragment_source puts them", name(p).c_str(),
            wrong_a);
      CHECK(wrong_meta == 0, "%s: %d metadata nibbles are not where sp24_meta_slot puts them",
            name(p).c_str(), wrong_meta);
    }
  } catch (const std::exception& e) {
    CHECK(false, "exception: %s", e.what());
  }
  return test::test_exit_code("test_mma_sp_layout");
}
