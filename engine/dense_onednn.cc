#include "engine/dense_onednn.h"

#include "engine/onednn_context.h"
#include "util/error.h"

namespace sparse24::engine {

namespace {

// A primitive for one (M, ldx, ldy) and the weight reordered to the layout it prefers.
struct Prepared {
  dnnl::matmul prim;
  dnnl::memory::desc src_md, dst_md;
  dnnl::memory weights;
};

}  // namespace

struct OnednnMatmul::Impl {
  const float* W;
  int64_t N, K;
  mutable std::mutex mutex;
  mutable std::map<std::tuple<int64_t, int64_t, int64_t>, Prepared> cache;

  const Prepared& prepare(int64_t M, int64_t ldx, int64_t ldy) const {
    std::lock_guard lock(mutex);
    auto key = std::make_tuple(M, ldx, ldy);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
    using dt = dnnl::memory::data_type;
    dnnl::memory::desc src_md({M, K}, dt::f32, {ldx, 1}), dst_md({M, N}, dt::f32, {ldy, 1});
    dnnl::memory::desc wei_any({K, N}, dt::f32, dnnl::memory::format_tag::any);
    dnnl::memory::desc wei_user({K, N}, dt::f32,
                                dnnl::memory::format_tag::ba);  // W[N][K] is Wᵀ[K][N] column-major
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_any, dst_md), onednn_engine());
    Prepared p{dnnl::matmul(pd), src_md, dst_md, dnnl::memory(pd.weights_desc(), onednn_engine())};
    dnnl::memory user(wei_user, onednn_engine(), const_cast<float*>(W));
    dnnl::reorder(user, p.weights).execute(onednn_stream(), user, p.weights);
    onednn_stream().wait();
    return cache.emplace(key, std::move(p)).first->second;
  }
};

OnednnMatmul::OnednnMatmul(const float* W, int64_t N, int64_t K) : impl_(new Impl{W, N, K, {}, {}}) {}
OnednnMatmul::~OnednnMatmul() = default;

void OnednnMatmul::run(int64_t M, const float* X, int64_t ldx, float* Y, int64_t ldy) const {
  try {
    const Prepared& p = impl_->prepare(M, ldx, ldy);
    dnnl::memory src(p.src_md, onednn_engine(), const_cast<float*>(X)), dst(p.dst_md, onednn_engine(), Y);
    p.prim.execute(onednn_stream(),
                   {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, p.weights}, {DNNL_ARG_DST, dst}});
    onednn_stream().wait();
  } catch (const dnnl::error& e) {
    fail("oneDNN matmul {} x {} x {} failed: {}", M, impl_->N, impl_->K, e.what());
  }
}

}  // namespace sparse24::engine
