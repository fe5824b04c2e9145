#include <gtest/gtest.h>

#include "graph/onnx_io.h"
#include "graph/weights.h"
#include "test_util.h"

namespace sparse24 {

namespace {

onnx::TensorProto make_init(const std::string& name, std::vector<int64_t> dims) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(onnx::TensorProto::FLOAT);
  int64_t n = 1;
  for (int64_t d : dims) {
    t.add_dims(d);
    n *= d;
  }
  for (int64_t i = 0; i < n; ++i) t.add_float_data(float(i));
  return t;
}

void add_node(onnx::GraphProto& g, const std::string& op, const std::string& name, const std::string& w,
              int trans_b = -1) {
  auto* n = g.add_node();
  n->set_op_type(op);
  n->set_name(name);
  n->add_input("x");
  n->add_input(w);
  n->add_output(name + "_out");
  if (trans_b >= 0) {
    auto* a = n->add_attribute();
    a->set_name("transB");
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(trans_b);
  }
}

}  // namespace

TEST(WeightSites, ShapesAndEligibility) {
  onnx::GraphProto g;
  *g.add_initializer() = make_init("b_kn", {8, 3});
  *g.add_initializer() = make_init("b_nk", {3, 8});
  *g.add_initializer() = make_init("m", {2, 12, 5});
  *g.add_initializer() = make_init("c", {6, 4, 3, 3});
  *g.add_initializer() = make_init("c_small", {6, 2, 3, 3});
  *g.add_initializer() = make_init("c_odd", {6, 6, 1, 1});
  *g.add_initializer() = make_init("k6", {6, 2});
  add_node(g, "Gemm", "g0", "b_kn", 0);
  add_node(g, "Gemm", "g1", "b_nk", 1);
  add_node(g, "MatMul", "mm", "m");
  add_node(g, "Conv", "conv", "c");
  add_node(g, "Conv", "", "c_small");
  add_node(g, "Conv", "conv_odd", "c_odd");
  add_node(g, "MatMul", "k6", "k6");
  add_node(g, "MatMul", "act", "not_an_initializer");
  auto s = find_weight_sites(g);
  ASSERT_EQ(s.size(), 8u);
  EXPECT_TRUE(s[0].eligible);
  EXPECT_EQ(s[0].N, 3);
  EXPECT_EQ(s[0].K, 8);
  EXPECT_EQ(s[1].N, 3);
  EXPECT_EQ(s[1].K, 8);
  EXPECT_EQ(s[2].batch, 2);
  EXPECT_EQ(s[2].N, 5);
  EXPECT_EQ(s[2].K, 12);
  EXPECT_TRUE(s[3].eligible);
  EXPECT_EQ(s[3].K, 36);
  EXPECT_EQ(s[4].node, "Conv#4");
  EXPECT_EQ(s[4].reason, "IC/g < 4 (IC/g = 2)");
  EXPECT_EQ(s[5].reason, "K % 4 != 0 (IC/g = 6)");
  EXPECT_EQ(s[6].reason, "K % 4 != 0 (K = 6)");
  EXPECT_EQ(s[7].reason, "weight not an initializer");
}

TEST(WeightSites, CanonicalFormPutsGroupsAlongK) {
  onnx::GraphProto g;
  *g.add_initializer() = make_init("b_kn", {8, 3});
  *g.add_initializer() = make_init("m", {2, 4, 3});
  *g.add_initializer() = make_init("c", {2, 4, 2, 1});
  add_node(g, "Gemm", "g0", "b_kn", 0);
  add_node(g, "MatMul", "mm", "m");
  add_node(g, "Conv", "conv", "c");
  auto sites = find_weight_sites(g);
  // Gemm B[K=8][N=3]: canonical (n, k) = B[k][n] = k*3 + n.
  Tensor gemm = to_canonical(read_tensor(g.initializer(0)), sites[0]);
  EXPECT_EQ(gemm.shape(), (std::vector<int64_t>{3, 8}));
  EXPECT_EQ(gemm.get(1 * 8 + 5), 5 * 3 + 1);
  // MatMul B[2][K=4][N=3]: canonical row (b, n), col k = B[b][k][n].
  Tensor mm = to_canonical(read_tensor(g.initializer(1)), sites[1]);
  EXPECT_EQ(mm.shape(), (std::vector<int64_t>{6, 4}));
  EXPECT_EQ(mm.get((1 * 3 + 2) * 4 + 3), 1 * 12 + 3 * 3 + 2);
  // Conv W[OC=2][IC=4][2][1]: canonical (oc, pos*4 + c) = W[oc][c][pos]; a group is 4 ICs at one position.
  Tensor conv = to_canonical(read_tensor(g.initializer(2)), sites[2]);
  EXPECT_EQ(conv.shape(), (std::vector<int64_t>{2, 8}));
  EXPECT_EQ(conv.get(1 * 8 + 1 * 4 + 2), (1 * 4 + 2) * 2 + 1);
  for (size_t i = 0; i < 3; ++i) {
    Tensor w = read_tensor(g.initializer(int(i)));
    EXPECT_TRUE(test::same_bytes(from_canonical(to_canonical(w, sites[i]), sites[i]), w));
  }
}

}  // namespace sparse24
