// CPU test of the host-side packing for the mma.sp kernels (kernels/cuda/sp24_pack.h): the round trip back to
// the portable layout, zero padding, and a lane-by-lane emulation of mma.sp reading the packed operands the
// way the kernels address them, which must reproduce the reference GEMM exactly on integer data.
#include <cstring>
#include <random>

#include "check.h"
#include "kernels/cuda/sp24_pack.h"
#include "reference/gemm.h"
#include "util/error.h"

using namespace sparse24;
using namespace sparse24::cuda;

namespace {

// A 2:4 weight with small nonzero integers in random kept positions (exact in f16, bf16 and i8).
Sparse24 random_weight(int64_t n, int64_t k, DType dtype, std::mt19937& rng) {
  Tensor w(dtype, {n, k});
  static constexpr int kPairs[6][2] = {{0, 1}, {0, 2}, {1, 2}, {0, 3}, {1, 3}, {2, 3}};
  std::uniform_int_distribution<int> pair(0, 5), value(-4, 4);
  for (int64_t g = 0; g < n * k / 4; ++g) {
    const int p = pair(rng);
    for (int i = 0; i < 2; ++i) {
      int v = value(rng);
      w.set(g * 4 + kPairs[p][i], float(v == 0 ? 1 : v));
    }
  }
  return compress_24(w, "test weight");
}

// The value of element (row, col) of a compressed row-major [rows][cols/2] buffer, widened to float.
float value_at(const uint8_t* bytes, DType dtype, int64_t index) {
  switch (dtype) {
    case DType::i8:
      return float(reinterpret_cast<const int8_t*>(bytes)[index]);
    case DType::bf16: {
      uint16_t b;
      std::memcpy(&b, bytes + 2 * index, 2);
      return bf16_to_f32(b);
    }
    default: {
      uint16_t h;
      std::memcpy(&h, bytes + 2 * index, 2);
      return f16_to_f32(h);
    }
  }
}

// Y[m][n] computed the way the kernels feed mma.sp: each lane's A registers from the fragment-ordered
// values (sp24_fragment_offset), its metadata word from the NVIDIA layout (sp24_meta_word_index), decoded
// with the PTX ISA's rule for which lanes supply which rows' metadata. Values are summed in double: with
// integer data every order gives the same exact result.
std::vector<double> emulate_mma_sp(const Sp24PackedWeight& p, int64_t M, const std::vector<float>& X) {
  const bool int8 = p.dtype == DType::i8;
  const int64_t elem = int64_t(dtype_size(p.dtype));
  const int64_t k_per_step = sp24_step_elements(p.dtype);
  const int64_t vals_per_reg = 4 / elem;  // compressed values in one 32-bit register
  std::vector<double> Y(size_t(M * p.n), 0.0);
  auto meta_word = [&](int64_t index) {  // little-endian 32-bit word, read without type punning
    uint32_t w;
    std::memcpy(&w, p.meta.data() + index * 4, 4);
    return w;
  };
  for (int64_t tile = 0; tile < p.n_padded / kSp24RowTile; ++tile)
    for (int64_t step = 0; step < p.steps(); ++step)
      for (int half = 0; half < 2; ++half) {
        // Rebuild this 16-row half's compressed A tile [16][k_per_step/2] from what each lane holds.
        std::vector<float> a(size_t(16 * k_per_step / 2));
        for (int lane = 0; lane < 32; ++lane) {
          const uint8_t* regs = p.values.data() + sp24_fragment_offset(tile, step, p.steps(), half, lane);
          for (int reg = 0; reg < 4; ++reg) {
            Sp24FragmentSource src = sp24_fragment_source(lane, reg);
            for (int v = 0; v < vals_per_reg; ++v)
              a[size_t(src.row * (k_per_step / 2) + src.byte / elem + v)] =
                  value_at(regs + reg * 4, p.dtype, v);
          }
        }
        // The metadata nibble of (row r of the half, group q of the k-step), from the lane that supplies it.
        auto nibble = [&](int r, int q) -> int {
          const Sp24MetaSlot slot = sp24_meta_slot(int8, half, r, q);
          const uint32_t word =
              meta_word(sp24_meta_word_index(tile, step, p.meta_words_per_step(), half, slot.lane, int8));
          return int(word >> slot.bit) & 0xf;
        };
        for (int r = 0; r < 16; ++r) {
          const int64_t n = tile * kSp24RowTile + half * 16 + r;
          if (n >= p.n) continue;
          for (int64_t m = 0; m < M; ++m) {
            double sum = 0;
            for (int q = 0; q < k_per_step / 4; ++q) {
              const int nib = nibble(r, q);
              for (int j = 0; j < 2; ++j) {
                const int64_t kk = step * k_per_step + 4 * q + ((nib >> (2 * j)) & 3);
                if (kk < p.k)
                  sum += double(a[size_t(r * (k_per_step / 2) + 2 * q + j)]) * X[size_t(m * p.k + kk)];
              }
            }
            Y[size_t(m * p.n + n)] += sum;
          }
        }
      }
  return Y;
}

void test_round_trip_and_padding(DType dtype, int64_t n, int64_t k, std::mt19937& rng) {
  Sparse24 w = random_weight(n, k, dtype, rng);
  Sp24PackedWeight p = pack_sp24_weight(w);
  const int64_t step = sp24_step_elements(dtype);
  CHECK(p.n_padded % 32 == 0 && p.n_padded >= n && p.n_padded - n < 32, "%s %lldx%lld: n_padded %lld",
        std::string(dtype_name(dtype)).c_str(), (long long)n, (long long)k, (long long)p.n_padded);
  CHECK(p.k_padded % step == 0 && p.k_padded >= k && p.k_padded - k < step, "k_padded %lld",
        (long long)p.k_padded);
  CHECK(p.values.size() == size_t(p.n_padded * p.k_padded / 2) * dtype_size(dtype), "values bytes %zu",
        p.values.size());
  CHECK(p.meta.size() == size_t(p.n_padded * p.k_padded / 8), "meta bytes %zu", p.meta.size());

  Sparse24 back = unpack_sp24_weight(p);
  CHECK(back.rows == n && back.cols == k && back.layout == Layout24::portable, "unpacked shape");
  CHECK(back.values == w.values, "%s %lldx%lld: values differ after the round trip",
        std::string(dtype_name(dtype)).c_str(), (long long)n, (long long)k);
  CHECK(back.meta == w.meta, "%s %lldx%lld: metadata differs after the round trip",
        std::string(dtype_name(dtype)).c_str(), (long long)n, (long long)k);

  // Every packed value outside the logical weight must be zero: count the nonzeros, which must equal the
  // nonzeros of the weight itself (all kept values are nonzero by construction).
  int64_t packed_nonzero = 0, weight_nonzero = 0;
  for (int64_t i = 0; i < int64_t(p.values.size() / dtype_size(dtype)); ++i)
    packed_nonzero += value_at(p.values.data(), dtype, i) != 0.0f;
  for (int64_t i = 0; i < n * k / 2; ++i)
    weight_nonzero += value_at(reinterpret_cast<const uint8_t*>(w.values.data()), dtype, i) != 0.0f;
  CHECK(packed_nonzero == weight_nonzero, "padding holds %lld nonzeros",
        (long long)(packed_nonzero - weight_nonzero));
}

void test_emulated_product(DType dtype, int64_t n, int64_t k, int64_t M, std::mt19937& rng) {
  Sparse24 w = random_weight(n, k, dtype, rng);
  Sp24PackedWeight p = pack_sp24_weight(w);
  std::uniform_int_distribution<int> value(-3, 3);
  std::vector<float> X(size_t(M * k));
  for (float& v : X) v = float(value(rng));

  std::vector<double> expected(size_t(M * n));
  if (dtype == DType::i8) {
    std::vector<int8_t> xi(X.begin(), X.end());
    std::vector<int32_t> y(size_t(M * n));
    reference::gemm_24_i8(M, xi.data(), k, w, y.data(), n);
    expected.assign(y.begin(), y.end());
  } else {
    std::vector<float> y(size_t(M * n));
    reference::gemm_24_f32(M, X.data(), k, w, nullptr, reference::Activation::none, y.data(), n);
    expected.assign(y.begin(), y.end());
  }
  std::vector<double> got = emulate_mma_sp(p, M, X);
  int64_t bad = 0, nonzero = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    bad += got[i] != expected[i];
    nonzero += expected[i] != 0;
  }
  CHECK(nonzero > 0, "the reference product is all zero: the test would prove nothing");
  CHECK(bad == 0, "%s n=%lld k=%lld M=%lld: %lld of %zu outputs differ from the reference",
        std::string(dtype_name(dtype)).c_str(), (long long)n, (long long)k, (long long)M, (long long)bad,
        got.size());
}

}  // namespace

int main() {
  std::mt19937 rng(6);
  for (DType dtype : {DType::f16, DType::bf16, DType::i8}) {
    // Whole tiles, partial row tiles, partial k-steps, both at once, and a single group.
    for (auto [n, k] :
         {std::pair<int64_t, int64_t>{64, 128}, {40, 128}, {32, 72}, {50, 100}, {1, 4}, {97, 260}})
      test_round_trip_and_padding(dtype, n, k, rng);
    for (auto [n, k] : {std::pair<int64_t, int64_t>{64, 128}, {40, 72}, {33, 200}})
      test_emulated_product(dtype, n, k, 5, rng);
  }
  // Weights the packer must refuse.
  bool refused = false;
  try {
    Sparse24 f32w = random_weight(32, 32, DType::bf16, rng);
    f32w.dtype = DType::f32;
    pack_sp24_weight(f32w);
  } catch (const Error&) {
    refused = true;
  }
  CHECK(refused, "an f32 weight was packed for mma.sp");
  return test::test_exit_code("test_sp24_pack");
}
