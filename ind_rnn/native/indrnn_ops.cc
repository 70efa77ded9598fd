// Fused CPU kernels for the IndRNN recurrence (forward and backward).
//
// Every (batch row, unit) pair is an independent scalar recurrence
//   h_t = act(z_t + u * h_{t-1}),
// so the work is split over batch rows across TensorFlow's CPU thread pool.
// Tensors are batch-major ([batch, time, units], Keras' layout): a row's whole
// sequence is contiguous, each thread streams through it, and no transposes
// are needed around the kernels. For narrow inputs the op also computes the
// input projection z_t = x_t @ W + b inside the loop (and its gradients in the
// backward pass), so the [batch, time, units] projections are never stored.
// The maths mirrors ind_rnn/recurrence.py (`_forward_states`, `_backward`);
// the Python side tests the two against each other and against NumPy.
#include <cmath>
#include <type_traits>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::int64;

enum class Activation { kRelu, kTanh, kSigmoid, kLinear };

Activation ParseActivation(const std::string& name) {
  if (name == "tanh") return Activation::kTanh;
  if (name == "sigmoid") return Activation::kSigmoid;
  if (name == "linear") return Activation::kLinear;
  return Activation::kRelu;
}

// ReLU is written as std::max(x, 0) is, `x < 0 ? 0 : x`, which is what
// TensorFlow's Relu computes (Eigen's max): a NaN passes through (as it
// does in the XLA and TF loops and in keras.layers.RNN), and -0 stays -0.
// `x > 0 ? x : 0` would turn a NaN into 0 and hide it. Both vectorise to
// the same two instructions, a compare and a mask (AVX2: vcmpltps + vandnps
// here, vcmpltps + vandps before).
template <typename T>
inline T Apply(Activation activation, T x) {
  switch (activation) {
    case Activation::kRelu: return x < T(0) ? T(0) : x;
    case Activation::kTanh: return std::tanh(x);
    case Activation::kSigmoid: return T(1) / (T(1) + std::exp(-x));
    default: return x;
  }
}

// act'(pre) written with act's output y, as TensorFlow's own gradients do.
// The caller multiplies it with the incoming gradient, as TF's ReluGrad
// (g * (y > 0)) and the reference do: an inf or NaN gradient meeting a
// zero derivative gives NaN, as 0 * inf does there.
template <typename T>
inline T DerivativeFromOutput(Activation activation, T y) {
  switch (activation) {
    case Activation::kRelu: return y > T(0) ? T(1) : T(0);
    case Activation::kTanh: return T(1) - y * y;
    case Activation::kSigmoid: return y * (T(1) - y);
    default: return T(1);
  }
}

// Cost hint for the sharder: enough per row that small batches stay on one thread.
constexpr int64 kCostPerRowStep = 2000;
constexpr int kShardsPerThread = 4;  // backward shards per thread (see IndRNNBackwardOp)

// Where a step's input term z_t comes from. `Projected`: read from
// precomputed projections x_t @ W ([batch, time, units]). `OnTheFly`: computed
// from the raw inputs ([batch, time, depth]) inside the loop, for narrow
// inputs (adding problem: depth 2; pixel MNIST: depth 1), so that the
// [batch, time, units] projection array is never written and read back.
// Either adds the bias (when given) in the loop: a separate bias pass, and its
// gradient's reduction over batch and time, cost a full sweep of memory each.
// `Step` writes h_t = act(z_t + u * h_{t-1}) for step `index` (b * steps + t)
// in one pass over the units, z_t formed in the same order as the reference
// (project_inputs: tensordot, then + bias); `scratch` ([units]) is only used
// by the general OnTheFly depth.
template <typename T, Activation A>
inline void Recur(const T* __restrict__ zt, const T* __restrict__ u,
                  const T* __restrict__ previous, T* __restrict__ current, int64 units) {
  for (int64 k = 0; k < units; ++k) current[k] = Apply(A, zt[k] + u[k] * previous[k]);
}

template <typename T>
struct Projected {
  const T* z;
  const T* bias;  // [units], or nullptr
  int64 units;
  template <Activation A>
  void Step(int64 index, const T* __restrict__ u, const T* __restrict__ previous,
            T* __restrict__ current, T* /*scratch*/) const {
    const T* __restrict__ zt = z + index * units;
    if (bias == nullptr) return Recur<T, A>(zt, u, previous, current, units);
    const T* __restrict__ b = bias;
    for (int64 k = 0; k < units; ++k)
      current[k] = Apply(A, (zt[k] + b[k]) + u[k] * previous[k]);
  }
};

template <typename T>
struct OnTheFly {
  const T* x;       // [batch * time, depth]
  const T* kernel;  // [depth, units]
  const T* bias;    // [units], or nullptr
  int64 depth, units;
  template <Activation A>
  void Step(int64 index, const T* __restrict__ u, const T* __restrict__ previous,
            T* __restrict__ current, T* __restrict__ scratch) const {
    const T* __restrict__ xt = x + index * depth;
    // The depths projected in the loop (recurrence.MAX_DEPTH_PROJECTED_IN_KERNEL)
    // get one fused pass each; other depths build z_t in `scratch` first.
    switch (depth * 2 + (bias != nullptr)) {
      case 2: return StepOfDepth<A, 1, false>(xt, u, previous, current);
      case 3: return StepOfDepth<A, 1, true>(xt, u, previous, current);
      case 4: return StepOfDepth<A, 2, false>(xt, u, previous, current);
      case 5: return StepOfDepth<A, 2, true>(xt, u, previous, current);
      case 8: return StepOfDepth<A, 4, false>(xt, u, previous, current);
      case 9: return StepOfDepth<A, 4, true>(xt, u, previous, current);
      default: break;
    }
    for (int64 k = 0; k < units; ++k) scratch[k] = T(0);
    for (int64 d = 0; d < depth; ++d) {
      const T xd = xt[d];
      const T* __restrict__ wd = kernel + d * units;
      for (int64 k = 0; k < units; ++k) scratch[k] += xd * wd[k];
    }
    if (bias != nullptr)
      for (int64 k = 0; k < units; ++k) scratch[k] += bias[k];
    Recur<T, A>(scratch, u, previous, current, units);
  }

  template <Activation A, int D, bool kBias>
  void StepOfDepth(const T* __restrict__ xt, const T* __restrict__ u,
                   const T* __restrict__ previous, T* __restrict__ current) const {
    T xd[D];
    for (int d = 0; d < D; ++d) xd[d] = xt[d];
    const T* __restrict__ w = kernel;
    const T* __restrict__ b = bias;
    for (int64 k = 0; k < units; ++k) {
      T zk = T(0);  // the same sums, in the same order, as the scratch path
      for (int d = 0; d < D; ++d) zk += xd[d] * w[d * units + k];
      if (kBias) zk += b[k];
      current[k] = Apply(A, zk + u[k] * previous[k]);
    }
  }
};

// The forward recurrence for batch rows [begin, end). The activation is a
// template argument so that the inner loop over units has no branch and
// vectorises; __restrict__ tells the compiler the rows do not overlap.
template <typename T, Activation A, typename Source>
void ForwardRows(const Source& source, const T* __restrict__ u, const T* __restrict__ h0,
                 const bool* valid, T* __restrict__ out, int64 begin, int64 end,
                 int64 steps, int64 units) {
  std::vector<T> scratch(units);
  for (int64 b = begin; b < end; ++b) {
    for (int64 t = 0; t < steps; ++t) {
      const int64 index = b * steps + t;
      const int64 row = index * units;
      const T* __restrict__ previous = t == 0 ? h0 + b * units : out + row - units;
      T* __restrict__ current = out + row;
      if (valid != nullptr && !valid[index]) {
        for (int64 k = 0; k < units; ++k) current[k] = previous[k];
        continue;
      }
      source.template Step<A>(index, u, previous, current, scratch.data());
    }
  }
}

// Gradient sums over one batch row's steps, kept in T (so the per-step adds
// are T-wide vector adds) and added into the shard's double totals at the
// end of each row (so precision holds across rows). No totals: no sums.
template <typename T>
class RowSums {
 public:
  RowSums(double* totals, int64 size) : totals_(totals), row_(totals ? size : 0, T(0)) {}
  bool active() const { return totals_ != nullptr; }
  T* data() { return row_.data(); }
  void Flush() {
    for (size_t i = 0; i < row_.size(); ++i) {
      totals_[i] += static_cast<double>(row_[i]);
      row_[i] = T(0);
    }
  }

 private:
  double* totals_;
  std::vector<T> row_;
};

// sum_k a[k] * b[k], in independent lanes so that it vectorises without
// -ffast-math (a single running sum is a serial chain of adds).
template <typename T>
inline T Dot(const T* __restrict__ a, const T* __restrict__ b, int64 size) {
  constexpr int kLanes = 16;
  T lanes[kLanes] = {};
  int64 k = 0;
  for (; k + kLanes <= size; k += kLanes)
    for (int lane = 0; lane < kLanes; ++lane) lanes[lane] += a[k + lane] * b[k + lane];
  for (; k < size; ++k) lanes[0] += a[k] * b[k];
  T sum = T(0);
  for (int lane = 0; lane < kLanes; ++lane) sum += lanes[lane];
  return sum;
}

// Where the backward pass puts dL/dz_t. `ProjectedGrad`: into the
// [batch, time, units] gradient of the projections. `OnTheFlyGrad`: straight
// into the gradients of the raw inputs and the input kernel, so dL/dz is
// never stored either. Both sum the bias gradient when there is a bias.
// `Slot` is where dL/dz_t is written, `Take` uses it, `Skip` stands for a
// masked step, `EndRow` closes a batch row.
// A masked step's dL/dz_t is exactly zero, and it still goes through the
// products that the reference (and the XLA / TF loops, whose projection is
// one matmul over all steps) computes with it: dL/dx_t = 0 @ W^T is NaN
// where a row of W is not finite, and 0 * x_t adds NaN to dL/dW where x_t
// is not finite. The Skips give those values without a per-step matmul.
template <typename T>
class ProjectedGrad {
 public:
  // PrefetchStep's locality hint for e and h (__builtin_prefetch's third
  // argument). With three streams a step (e, h and dz), asking for them with
  // a low locality hint (prefetcht2) left the L1's miss buffers to the
  // demand loads: backward 15-25% faster (op level, B 32, T 784, 128 units,
  // Zen 3, at both levels); with the input projected in the loop (one
  // stream fewer) it was 10-20% slower, so OnTheFlyGrad keeps the default.
  static constexpr int kReadLocality = 1;
  ProjectedGrad(T* dz, int64 units) : dz_(dz), units_(units) {}
  T* Slot(int64 index) { return dz_ + index * units_; }
  // Step `index`'s slot, about to be written (see PrefetchStep).
  void Prefetch(int64 index, int64 k) const { __builtin_prefetch(dz_ + index * units_ + k, 1); }
  void Take(int64 /*index*/, const T* /*dzt*/) {}  // dz_t is in place already
  void Skip(int64 index) {
    T* dzt = Slot(index);
    for (int64 k = 0; k < units_; ++k) dzt[k] = T(0);
  }
  void EndRow() {}

 private:
  T* dz_;
  int64 units_;
};

template <typename T>
class OnTheFlyGrad {
 public:
  static constexpr int kReadLocality = 3;  // see ProjectedGrad
  // x, dx: [batch * time, depth]; kernel: [depth, units]; dkernel: this
  // shard's [depth, units] totals.
  OnTheFlyGrad(const T* x, const T* kernel, T* dx, double* dkernel, int64 depth, int64 units)
      : x_(x), kernel_(kernel), dx_(dx), kernel_sums_(dkernel, depth * units),
        depth_(depth), units_(units), dz_(units),
        masked_dx_(depth) {
    // dL/dx_t of a masked step, 0 @ W^T: the same for every masked step.
    std::vector<T> zeros(units, T(0));
    for (int64 d = 0; d < depth; ++d) masked_dx_[d] = Dot(zeros.data(), kernel + d * units, units);
  }
  T* Slot(int64 /*index*/) { return dz_.data(); }
  void Prefetch(int64 /*index*/, int64 /*k*/) const {}  // dx_t is [depth]: in cache
  void Take(int64 index, const T* __restrict__ dzt) {
    const T* __restrict__ xt = x_ + index * depth_;
    T* __restrict__ dxt = dx_ + index * depth_;
    T* __restrict__ dk = kernel_sums_.data();
    for (int64 d = 0; d < depth_; ++d) {
      const T xd = xt[d];
      for (int64 k = 0; k < units_; ++k) dk[d * units_ + k] += xd * dzt[k];
      dxt[d] = Dot(dzt, kernel_ + d * units_, units_);
    }
  }
  void Skip(int64 index) {
    const T* __restrict__ xt = x_ + index * depth_;
    T* __restrict__ dk = kernel_sums_.data();
    for (int64 d = 0; d < depth_; ++d) {
      dx_[index * depth_ + d] = masked_dx_[d];
      // x_d * 0 is 0 (nothing to add) unless x_d is inf or NaN: then NaN.
      const T product = xt[d] * T(0);
      if (product != T(0))
        for (int64 k = 0; k < units_; ++k) dk[d * units_ + k] += product;
    }
  }
  void EndRow() { kernel_sums_.Flush(); }

 private:
  const T* x_;
  const T* kernel_;
  T* dx_;
  RowSums<T> kernel_sums_;
  int64 depth_, units_;
  std::vector<T> dz_;
  std::vector<T> masked_dx_;  // [depth]
};

// The backward pass walks each row's steps from last to first. The CPU's
// stream prefetchers follow that descending walk poorly: without help, half
// of the backward's time went to waiting for dL/dh_t (perf annotate, Zen 3),
// and software prefetches a few steps ahead made the backward 1.3x (projected
// inputs) to 2.9x (inputs projected in the loop) faster. The steps are taken
// in blocks of kPrefetchBlock (a 4 KB page of 128 float units), and while a
// block is worked on, the block below it is asked for in ascending order,
// which the hardware prefetchers extend: with dL/dh_t given, another 7-18%
// (op level, 2 threads, B 32, T 784, 128 units) over asking 4 steps ahead
// in the walk's own order. Prefetches never fault, and the addresses asked
// for stay inside the arrays (the block below exists).
constexpr int64 kPrefetchBlock = 8;

// The step whose lines are asked for while step t is worked on: the block
// below t's, in ascending order as t descends through its own block; -1 in
// the lowest block.
inline int64 PrefetchTarget(int64 t) {
  const int64 offset = t % kPrefetchBlock;
  return t - offset - kPrefetchBlock + (kPrefetchBlock - 1 - offset);
}

template <typename T, typename Sink>
inline void PrefetchStep(const T* e, const T* h, Sink& sink, int64 index, int64 units) {
  constexpr int64 kLine = 64 / sizeof(T);  // floats per cache line
  const int64 row = index * units;
  for (int64 k = 0; k < units; k += kLine) {
    if (e != nullptr) __builtin_prefetch(e + row + k, 0, Sink::kReadLocality);
    __builtin_prefetch(h + row + k, 0, Sink::kReadLocality);
    sink.Prefetch(index, k);
  }
}

// One unmasked step of the backward recurrence, in one pass over the units:
// the incoming gradient (g from step t+1, plus e_t = dL/dh_t when given)
// through act', into dz_t, du += dz_t * h_{t-1}, db += dz_t, g = u * dz_t.
template <typename T, Activation A, bool kE, bool kBias>
inline void BackwardStep(const T* __restrict__ u, const T* __restrict__ ht,
                         const T* __restrict__ previous, const T* __restrict__ et,
                         T* __restrict__ gb, T* __restrict__ dzt, T* __restrict__ du_row,
                         T* __restrict__ db_row, int64 units) {
  for (int64 k = 0; k < units; ++k) {
    const T incoming = kE ? gb[k] + et[k] : gb[k];
    const T grad_pre = DerivativeFromOutput(A, ht[k]) * incoming;
    dzt[k] = grad_pre;
    du_row[k] += grad_pre * previous[k];
    if (kBias) db_row[k] += grad_pre;
    gb[k] = u[k] * grad_pre;
  }
}

// The backward recurrence for batch rows [begin, end); see IndRNNBackwardOp.
// `g` holds, per row, dL/dh_t arriving from step t+1 (initially dL/dh_last);
// on return it holds dL/dh0. `du` (and `db` unless null) accumulate
// sum_t dz_t * h_{t-1} (and sum_t dz_t). kE: e (dL/dh_t per step) is given.
template <typename T, Activation A, bool kE, bool kBias, typename Sink>
void BackwardRowsOf(const T* __restrict__ u, const T* __restrict__ h0, const bool* valid,
                    const T* __restrict__ h, const T* __restrict__ e, Sink& sink,
                    T* __restrict__ g, double* du, double* db, int64 begin, int64 end,
                    int64 steps, int64 units) {
  RowSums<T> weight_sums(du, units), bias_sums(db, units);
  T* __restrict__ du_row = weight_sums.data();
  T* __restrict__ db_row = bias_sums.data();
  for (int64 b = begin; b < end; ++b) {
    T* __restrict__ gb = g + (b - begin) * units;
    for (int64 t = steps - 1; t >= 0; --t) {
      const int64 index = b * steps + t;
      const int64 row = index * units;
      const T* __restrict__ previous = t == 0 ? h0 + b * units : h + row - units;
      const int64 target = PrefetchTarget(t);
      if (target >= 0) PrefetchStep(e, h, sink, b * steps + target, units);
      if (valid != nullptr && !valid[index]) {
        if (e != nullptr)
          for (int64 k = 0; k < units; ++k) gb[k] += e[row + k];
        // dz_t = 0, so du gains 0 * h_{t-1}: nothing, or NaN where
        // h_{t-1} is not finite, as in the reference's sum.
        for (int64 k = 0; k < units; ++k) du_row[k] += T(0) * previous[k];
        sink.Skip(index);
        continue;  // the state passed through: g flows on unchanged
      }
      T* __restrict__ dzt = sink.Slot(index);
      BackwardStep<T, A, kE, kBias>(u, h + row, previous, kE ? e + row : nullptr, gb, dzt,
                                     du_row, db_row, units);
      sink.Take(index, dzt);
    }
    weight_sums.Flush();
    if (bias_sums.active()) bias_sums.Flush();
    sink.EndRow();
  }
}

template <typename T, Activation A, typename Sink>
void BackwardRows(const T* u, const T* h0, const bool* valid, const T* h, const T* e,
                  Sink& sink, T* g, double* du, double* db, int64 begin, int64 end,
                  int64 steps, int64 units) {
  auto run = [&](auto rows) { rows(u, h0, valid, h, e, sink, g, du, db, begin, end, steps, units); };
  if (e != nullptr && db != nullptr) run(BackwardRowsOf<T, A, true, true, Sink>);
  else if (e != nullptr) run(BackwardRowsOf<T, A, true, false, Sink>);
  else if (db != nullptr) run(BackwardRowsOf<T, A, false, true, Sink>);
  else run(BackwardRowsOf<T, A, false, false, Sink>);
}

// Calls `run(std::integral_constant<Activation, A>())`: the activation
// becomes a compile-time constant inside `run` (C++17 has no templated lambdas).
template <Activation A>
using ActivationTag = std::integral_constant<Activation, A>;

template <typename Run>
void WithActivation(Activation activation, Run&& run) {
  switch (activation) {
    case Activation::kRelu: run(ActivationTag<Activation::kRelu>()); break;
    case Activation::kTanh: run(ActivationTag<Activation::kTanh>()); break;
    case Activation::kSigmoid: run(ActivationTag<Activation::kSigmoid>()); break;
    default: run(ActivationTag<Activation::kLinear>());
  }
}

}  // namespace

REGISTER_OP("IndRNNForward")
    .Attr("T: {float, double}")
    .Attr("activation: {'relu', 'tanh', 'sigmoid', 'linear'}")
    .Attr("has_mask: bool")
    .Input("inputs: T")          // [batch, time, units] projections, or raw
                                 // [batch, time, depth] when input_kernel is given
    .Input("input_kernel: T")    // [depth, units], or [0]: inputs are projections
    .Input("bias: T")            // [units], or [0]: no bias (or already in inputs)
    .Input("weight: T")          // [units]
    .Input("initial_state: T")   // [batch, units]
    .Input("mask: bool")         // [batch, time], or [0] when has_mask is false
    .Output("states: T")         // [batch, time, units]
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle states;
      TF_RETURN_IF_ERROR(c->ReplaceDim(c->input(0), 2, c->Dim(c->input(3), 0), &states));
      c->set_output(0, states);
      return absl::OkStatus();
    });

REGISTER_OP("IndRNNBackward")
    .Attr("T: {float, double}")
    .Attr("activation: {'relu', 'tanh', 'sigmoid', 'linear'}")
    .Attr("has_mask: bool")
    .Input("inputs: T")            // raw [batch, time, depth] inputs, or [0] (projections)
    .Input("input_kernel: T")      // [depth, units], or [0]
    .Input("bias: T")              // [units], or [0]
    .Input("weight: T")            // [units]
    .Input("initial_state: T")     // [batch, units]
    .Input("mask: bool")           // [batch, time] or [0]
    .Input("states: T")            // [batch, time, units]
    .Input("grad_states: T")       // [batch, time, units], or [0] if none reached them
    .Input("grad_last_state: T")   // [batch, units]
    .Output("grad_inputs: T")      // like the forward op's `inputs`
    .Output("grad_input_kernel: T")  // [depth, units], or [0]
    .Output("grad_bias: T")        // [units], or [0]
    .Output("grad_weight: T")      // [units]
    .Output("grad_initial_state: T")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->UnknownShapeOfRank(3));
      c->set_output(1, c->UnknownShape());
      c->set_output(2, c->UnknownShape());
      c->set_output(3, c->input(3));
      c->set_output(4, c->input(4));
      return absl::OkStatus();
    });

// Optional inputs are passed as empty tensors: no input kernel means the
// inputs are projections already, no bias means none is added in the loop.
inline bool Given(const Tensor& optional) { return optional.NumElements() > 0; }

// The attributes both ops share.
class IndRNNOpBase : public OpKernel {
 public:
  explicit IndRNNOpBase(OpKernelConstruction* context) : OpKernel(context) {
    std::string activation;
    OP_REQUIRES_OK(context, context->GetAttr("activation", &activation));
    OP_REQUIRES_OK(context, context->GetAttr("has_mask", &has_mask_));
    activation_ = ParseActivation(activation);
  }

 protected:
  Activation activation_;
  bool has_mask_;
};

template <typename T>
class IndRNNForwardOp : public IndRNNOpBase {
 public:
  using IndRNNOpBase::IndRNNOpBase;

  void Compute(OpKernelContext* context) override {
    const Tensor& inputs = context->input(0);
    const Tensor& input_kernel = context->input(1);
    const Tensor& bias = context->input(2);
    const Tensor& weight = context->input(3);
    const Tensor& initial_state = context->input(4);
    const Tensor& mask = context->input(5);
    OP_REQUIRES(context, inputs.dims() == 3,
                absl::InvalidArgumentError("inputs must be [batch, time, depth]"));
    const int64 batch = inputs.dim_size(0), steps = inputs.dim_size(1),
                depth = inputs.dim_size(2), units = weight.NumElements();
    const bool on_the_fly = Given(input_kernel);
    OP_REQUIRES(context, on_the_fly ? (input_kernel.dims() == 2 &&
                                       input_kernel.dim_size(0) == depth &&
                                       input_kernel.dim_size(1) == units)
                                    : depth == units,
                absl::InvalidArgumentError("inputs/input_kernel shapes do not match"));
    OP_REQUIRES(context, !Given(bias) || bias.NumElements() == units,
                absl::InvalidArgumentError("bias must be [units]"));
    OP_REQUIRES(context, initial_state.NumElements() == batch * units,
                absl::InvalidArgumentError("weight/initial_state shapes do not match"));
    OP_REQUIRES(context, !has_mask_ || mask.NumElements() == steps * batch,
                absl::InvalidArgumentError("mask must be [batch, time]"));
    Tensor* states = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({batch, steps, units}),
                                                     &states));

    const T* x = inputs.flat<T>().data();
    const T* u = weight.flat<T>().data();
    const T* h0 = initial_state.flat<T>().data();
    const bool* valid = has_mask_ ? mask.flat<bool>().data() : nullptr;
    T* out = states->flat<T>().data();
    const T* b = Given(bias) ? bias.flat<T>().data() : nullptr;
    const Projected<T> projected{x, b, units};
    const OnTheFly<T> computed{x, input_kernel.flat<T>().data(), b, depth, units};

    auto rows = [&](int64 begin, int64 end) {
      WithActivation(activation_, [&](auto tag) {
        constexpr Activation A = decltype(tag)::value;
        if (on_the_fly)
          ForwardRows<T, A>(computed, u, h0, valid, out, begin, end, steps, units);
        else
          ForwardRows<T, A>(projected, u, h0, valid, out, begin, end, steps, units);
      });
    };
    auto* workers = context->device()->tensorflow_cpu_worker_threads()->workers;
    tensorflow::Shard(workers->NumThreads(), workers, batch,
                      kCostPerRowStep * steps, rows);
  }
};

template <typename T>
class IndRNNBackwardOp : public IndRNNOpBase {
 public:
  using IndRNNOpBase::IndRNNOpBase;

  void Compute(OpKernelContext* context) override {
    const Tensor& inputs = context->input(0);
    const Tensor& input_kernel = context->input(1);
    const Tensor& bias = context->input(2);
    const Tensor& weight = context->input(3);
    const Tensor& initial_state = context->input(4);
    const Tensor& mask = context->input(5);
    const Tensor& states = context->input(6);
    const Tensor& grad_states = context->input(7);
    const Tensor& grad_last_state = context->input(8);
    OP_REQUIRES(context, states.dims() == 3,
                absl::InvalidArgumentError("states must be [batch, time, units]"));
    const int64 batch = states.dim_size(0), steps = states.dim_size(1),
                units = states.dim_size(2);
    const bool on_the_fly = Given(input_kernel), has_bias = Given(bias);
    const int64 depth = on_the_fly ? input_kernel.dim_size(0) : units;
    OP_REQUIRES(context, !on_the_fly || (inputs.dims() == 3 && inputs.dim_size(0) == batch &&
                                         inputs.dim_size(1) == steps &&
                                         inputs.dim_size(2) == depth &&
                                         input_kernel.dim_size(1) == units),
                absl::InvalidArgumentError("inputs/input_kernel shapes do not match"));
    OP_REQUIRES(context, !has_bias || bias.NumElements() == units,
                absl::InvalidArgumentError("bias must be [units]"));
    const bool has_grad_states = grad_states.NumElements() > 0;
    OP_REQUIRES(context, !has_grad_states || grad_states.shape() == states.shape(),
                absl::InvalidArgumentError("grad_states must match states"));

    Tensor* grad_inputs = nullptr;
    Tensor* grad_input_kernel = nullptr;
    Tensor* grad_bias = nullptr;
    Tensor* grad_weight = nullptr;
    Tensor* grad_initial_state = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({batch, steps, depth}),
                                                     &grad_inputs));
    OP_REQUIRES_OK(context, context->allocate_output(
                                1, on_the_fly ? input_kernel.shape() : TensorShape({0}),
                                &grad_input_kernel));
    OP_REQUIRES_OK(context, context->allocate_output(
                                2, TensorShape({has_bias ? units : 0}), &grad_bias));
    OP_REQUIRES_OK(context, context->allocate_output(3, weight.shape(), &grad_weight));
    OP_REQUIRES_OK(context,
                   context->allocate_output(4, initial_state.shape(), &grad_initial_state));

    const T* u = weight.flat<T>().data();
    const T* h0 = initial_state.flat<T>().data();
    const bool* valid = has_mask_ ? mask.flat<bool>().data() : nullptr;
    const T* h = states.flat<T>().data();
    const T* e = has_grad_states ? grad_states.flat<T>().data() : nullptr;
    const T* e_last = grad_last_state.flat<T>().data();
    T* dx = grad_inputs->flat<T>().data();
    T* dh0 = grad_initial_state->flat<T>().data();

    // Each shard sums its own du (and dW, db) in a block [du | dW | db]; the
    // shards' sums are added at the end. kShardsPerThread shards a thread, so
    // that a thread slowed by other ops (the matmuls running beside this one)
    // leaves its remaining shards to the others, as the forward's ParallelFor does.
    auto* workers = context->device()->tensorflow_cpu_worker_threads()->workers;
    const int shards =
        std::max(1, std::min<int>(kShardsPerThread * workers->NumThreads(), batch));
    const int64 kernel_sums = on_the_fly ? depth * units : 0, bias_sums = has_bias ? units : 0;
    const int64 sums_per_shard = units + kernel_sums + bias_sums;
    std::vector<double> partial(static_cast<size_t>(shards) * sums_per_shard, 0.0);
    const int64 rows_per_shard = (batch + shards - 1) / shards;

    auto run_shard = [&](int64 shard_begin, int64 shard_end) {
      for (int64 shard = shard_begin; shard < shard_end; ++shard) {
        const int64 begin = shard * rows_per_shard;
        const int64 end = std::min(batch, begin + rows_per_shard);
        double* du = partial.data() + shard * sums_per_shard;
        // `carried` holds dL/dh_t coming from step t+1, per row of the shard.
        std::vector<T> carried(static_cast<size_t>(std::max<int64>(0, end - begin)) * units);
        for (int64 b = begin; b < end; ++b)
          for (int64 k = 0; k < units; ++k)
            carried[(b - begin) * units + k] = e_last[b * units + k];
        T* g = carried.data();
        WithActivation(activation_, [&](auto tag) {
          constexpr Activation A = decltype(tag)::value;
          double* db = has_bias ? du + units + kernel_sums : nullptr;
          if (on_the_fly) {
            OnTheFlyGrad<T> sink(inputs.flat<T>().data(), input_kernel.flat<T>().data(), dx,
                                 du + units, depth, units);
            BackwardRows<T, A>(u, h0, valid, h, e, sink, g, du, db, begin, end, steps, units);
          } else {
            ProjectedGrad<T> sink(dx, units);
            BackwardRows<T, A>(u, h0, valid, h, e, sink, g, du, db, begin, end, steps, units);
          }
        });
        for (int64 b = begin; b < end; ++b)
          for (int64 k = 0; k < units; ++k) dh0[b * units + k] = carried[(b - begin) * units + k];
      }
    };
    tensorflow::Shard(workers->NumThreads(), workers, shards,
                      kCostPerRowStep * steps * rows_per_shard, run_shard);

    // The shards' sums: [du | dW | db] of each shard's block, in that order,
    // into grad_weight, grad_input_kernel and grad_bias (the latter two may be
    // empty), which are laid out the same way.
    T* targets[] = {grad_weight->flat<T>().data(), grad_input_kernel->flat<T>().data(),
                    grad_bias->flat<T>().data()};
    const int64 lengths[] = {units, kernel_sums, bias_sums};
    int64 offset = 0;
    for (int target = 0; target < 3; ++target) {
      for (int64 i = 0; i < lengths[target]; ++i) {
        double total = 0.0;
        for (int shard = 0; shard < shards; ++shard)
          total += partial[shard * sums_per_shard + offset + i];
        targets[target][i] = static_cast<T>(total);
      }
      offset += lengths[target];
    }
  }
};

#define REGISTER_INDRNN_KERNELS(type)                                              \
  REGISTER_KERNEL_BUILDER(                                                         \
      Name("IndRNNForward").Device(DEVICE_CPU).TypeConstraint<type>("T"),          \
      IndRNNForwardOp<type>);                                                      \
  REGISTER_KERNEL_BUILDER(                                                         \
      Name("IndRNNBackward").Device(DEVICE_CPU).TypeConstraint<type>("T"),         \
      IndRNNBackwardOp<type>);

REGISTER_INDRNN_KERNELS(float);
REGISTER_INDRNN_KERNELS(double);
