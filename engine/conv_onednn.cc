#include "engine/conv_onednn.h"

#include <map>
#include <mutex>
#include <unordered_map>

#include "engine/onednn_context.h"
#include "engine/ops/simd_kernels.h"
#include "util/error.h"

namespace sparse24::engine {

namespace {

dnnl::memory::format_tag plain_tag(size_t rank, bool channels_last) {
  using tag = dnnl::memory::format_tag;
  if (channels_last) return rank == 3 ? tag::nwc : rank == 4 ? tag::nhwc : tag::ndhwc;
  return rank == 3 ? tag::ncw : rank == 4 ? tag::nchw : tag::ncdhw;
}

// A primitive for one input shape, its weights in the layout it chose, and the plain-layout descriptors of
// the caller's x and y (reordered when the primitive prefers a blocked layout).
struct Prepared {
  dnnl::convolution_forward prim;
  dnnl::memory weights, bias;
  dnnl::memory::desc src_user, dst_user, src_md, dst_md;
};

}  // namespace

struct OnednnConv::Impl {
  Tensor oihw;  // the ONNX weight layout oneDNN reads: [OC][IC][k...]
  std::vector<float> bias;
  reference::Activation act;
  mutable std::mutex mutex;
  mutable std::map<std::vector<int64_t>, Prepared> cache;

  const Prepared& prepare(const ops::ConvShape& s, bool channels_last, bool residual,
                          bool residual_relu) const {
    std::vector<int64_t> key = {s.batch, s.in_channels, int64_t(channels_last), int64_t(residual),
                                int64_t(residual_relu)};
    key.insert(key.end(), s.window.in.begin(), s.window.in.end());
    std::lock_guard lock(mutex);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const auto& w = s.window;
    dnnl::memory::dims src_dims = {s.batch, s.in_channels}, dst_dims = {s.batch, s.out_channels};
    src_dims.insert(src_dims.end(), w.in.begin(), w.in.end());
    dst_dims.insert(dst_dims.end(), w.out.begin(), w.out.end());
    dnnl::memory::dims wei_dims(oihw.shape().begin(), oihw.shape().end()),
        strides(w.strides.begin(), w.strides.end()), dilates, pad_l(w.pads_begin.begin(), w.pads_begin.end()),
        pad_r(w.pads_end.begin(), w.pads_end.end());
    for (int64_t d : w.dilations) dilates.push_back(d - 1);  // oneDNN counts the gaps
    const size_t rank = src_dims.size();
    dnnl::memory::desc src_any(src_dims, dt::f32, tag::any), dst_any(dst_dims, dt::f32, tag::any),
        wei_any(wei_dims, dt::f32, tag::any), bias_md({s.out_channels}, dt::f32, tag::x);
    dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                      src_any, wei_any, bias_md, dst_any, strides, dilates, pad_l, pad_r);
    dnnl::post_ops po;
    if (act == reference::Activation::relu)
      po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    if (act == reference::Activation::gelu)
      po.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f);
    if (act == reference::Activation::relu6)  // clip to [alpha, beta]
      po.append_eltwise(1.0f, dnnl::algorithm::eltwise_clip, 0.0f, 6.0f);
    if (residual) {  // y += r in the layout the caller gives y, read where the primitive writes y
      po.append_binary(dnnl::algorithm::binary_add,
                       dnnl::memory::desc(dst_dims, dt::f32, plain_tag(rank, channels_last)));
      if (residual_relu) po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    }
    dnnl::primitive_attr attr;
    attr.set_post_ops(po);
    dnnl::convolution_forward::primitive_desc pd(d, attr, onednn_engine());
    Prepared p{dnnl::convolution_forward(pd),
               dnnl::memory(pd.weights_desc(), onednn_engine()),
               dnnl::memory(bias_md, onednn_engine()),
               dnnl::memory::desc(src_dims, dt::f32, plain_tag(rank, channels_last)),
               dnnl::memory::desc(dst_dims, dt::f32, plain_tag(rank, channels_last)),
               pd.src_desc(),
               pd.dst_desc()};
    dnnl::memory user_w({wei_dims, dt::f32,
                         rank == 3   ? tag::oiw
                         : rank == 4 ? tag::oihw
                                     : tag::oidhw},
                        onednn_engine(), const_cast<float*>(oihw.data<float>()));
    dnnl::reorder(user_w, p.weights).execute(onednn_stream(), user_w, p.weights);
    float* b = static_cast<float*>(p.bias.get_data_handle());
    for (int64_t o = 0; o < s.out_channels; ++o) b[o] = bias.empty() ? 0.0f : bias[size_t(o)];
    onednn_stream().wait();
    return cache.emplace(key, std::move(p)).first->second;
  }
};

OnednnConv::OnednnConv(const Tensor& wc, const std::vector<int64_t>& weight_shape,
                       const std::vector<float>& bias, reference::Activation act)
    : impl_(new Impl{Tensor(DType::f32, weight_shape), bias, act, {}, {}}) {
  // canonical [oc][pos · IC + ic] -> [oc][ic][pos]
  const int64_t oc = weight_shape[0], ic = weight_shape[1], kvol = wc.dim(1) / ic;
  for (int64_t o = 0; o < oc; ++o)
    for (int64_t c = 0; c < ic; ++c)
      for (int64_t p = 0; p < kvol; ++p)
        impl_->oihw.data<float>()[(o * ic + c) * kvol + p] = wc.data<float>()[o * wc.dim(1) + p * ic + c];
}

OnednnConv::~OnednnConv() = default;

void OnednnConv::run(const ops::ConvShape& s, const float* x, float* y, bool channels_last,
                     const float* residual, bool residual_relu) const {
  try {
    const Prepared& p = impl_->prepare(s, channels_last, residual != nullptr, residual_relu);
    if (residual && p.dst_md != p.dst_user) {
      // The primitive writes a blocked layout here: the residual is added after the reorder instead.
      run(s, x, y, channels_last);
      ops::residual_add_f32(y, residual, s.batch * s.out_channels * s.out_pixels(), residual_relu);
      return;
    }
    dnnl::memory src_user(p.src_user, onednn_engine(), const_cast<float*>(x)),
        dst_user(p.dst_user, onednn_engine(), y);
    dnnl::memory src = src_user, dst = dst_user;
    if (p.src_md != p.src_user) {
      src = dnnl::memory(p.src_md, onednn_engine());
      dnnl::reorder(src_user, src).execute(onednn_stream(), src_user, src);
    }
    if (p.dst_md != p.dst_user) dst = dnnl::memory(p.dst_md, onednn_engine());
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, p.weights}, {DNNL_ARG_BIAS, p.bias}, {DNNL_ARG_DST, dst}};
    if (residual) {
      // The binary post-op follows the activation post-op, if the layer has one.
      const int index = impl_->act == reference::Activation::none ? 0 : 1;
      args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) | DNNL_ARG_SRC_1] =
          dnnl::memory(p.dst_user, onednn_engine(), const_cast<float*>(residual));
    }
    p.prim.execute(onednn_stream(), args);
    if (p.dst_md != p.dst_user) dnnl::reorder(dst, dst_user).execute(onednn_stream(), dst, dst_user);
    onednn_stream().wait();
  } catch (const dnnl::error& e) {
    fail("oneDNN convolution failed: {}", e.what());
  }
}

}  // namespace sparse24::engine
