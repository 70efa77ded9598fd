// Fused CPU kernels for the IndRNN recurrence (forward and backward).
//
// Every (batch row, unit) pair is an independent scalar recurrence
//   h_t = act(z_t + u * h_{t-1}),
// so the work is split over batch rows across TensorFlow's CPU thread pool.
// Tensors are batch-major ([batch, time, units], Keras' layout): a row's whole
// sequence is contiguous, each thread streams through it, and no transposes
// are needed around the kernels.
// The maths mirrors ind_rnn/recurrence.py (`_forward_states`, `_backward`);
// the Python side tests the two against each other and against NumPy.
#include <cmath>

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

template <typename T>
inline T Apply(Activation activation, T x) {
  switch (activation) {
    case Activation::kRelu: return x > T(0) ? x : T(0);
    case Activation::kTanh: return std::tanh(x);
    case Activation::kSigmoid: return T(1) / (T(1) + std::exp(-x));
    default: return x;
  }
}

// act'(pre) written with act's output y, as TensorFlow's own gradients do.
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

// The forward recurrence for batch rows [begin, end). The activation is a
// template argument so that the inner loop over units has no branch and
// vectorises; __restrict__ tells the compiler the rows do not overlap.
template <typename T, Activation A>
void ForwardRows(const T* __restrict__ z, const T* __restrict__ u, const T* __restrict__ h0,
                 const bool* valid, T* __restrict__ out, int64 begin, int64 end,
                 int64 steps, int64 units) {
  for (int64 b = begin; b < end; ++b) {
    for (int64 t = 0; t < steps; ++t) {
      const int64 row = (b * steps + t) * units;
      const T* __restrict__ previous = t == 0 ? h0 + b * units : out + row - units;
      T* __restrict__ current = out + row;
      if (valid != nullptr && !valid[b * steps + t]) {
        for (int64 k = 0; k < units; ++k) current[k] = previous[k];
        continue;
      }
      const T* __restrict__ zt = z + row;
      for (int64 k = 0; k < units; ++k) current[k] = Apply(A, zt[k] + u[k] * previous[k]);
    }
  }
}

// The backward recurrence for batch rows [begin, end); see IndRNNBackwardOp.
// `g` holds, per row, dL/dh_t arriving from step t+1 (initially dL/dh_last);
// on return it holds dL/dh0. `du` accumulates sum_t dz_t * h_{t-1}.
template <typename T, Activation A>
void BackwardRows(const T* __restrict__ u, const T* __restrict__ h0, const bool* valid,
                  const T* __restrict__ h, const T* __restrict__ e, T* __restrict__ dz,
                  T* __restrict__ g, double* __restrict__ du, int64 begin, int64 end,
                  int64 steps, int64 units) {
  for (int64 b = begin; b < end; ++b) {
    T* __restrict__ gb = g + (b - begin) * units;
    for (int64 t = steps - 1; t >= 0; --t) {
      const int64 row = (b * steps + t) * units;
      const T* __restrict__ previous = t == 0 ? h0 + b * units : h + row - units;
      T* __restrict__ dzt = dz + row;
      if (e != nullptr)
        for (int64 k = 0; k < units; ++k) gb[k] += e[row + k];
      if (valid != nullptr && !valid[b * steps + t]) {
        for (int64 k = 0; k < units; ++k) dzt[k] = T(0);
        continue;  // the state passed through: g flows on unchanged
      }
      const T* __restrict__ ht = h + row;
      for (int64 k = 0; k < units; ++k) {
        const T grad_pre = DerivativeFromOutput(A, ht[k]) * gb[k];
        dzt[k] = grad_pre;
        du[k] += static_cast<double>(grad_pre * previous[k]);
        gb[k] = u[k] * grad_pre;
      }
    }
  }
}

}  // namespace

REGISTER_OP("IndRNNForward")
    .Attr("T: {float, double}")
    .Attr("activation: {'relu', 'tanh', 'sigmoid', 'linear'}")
    .Attr("has_mask: bool")
    .Input("projected: T")       // [batch, time, units]
    .Input("weight: T")          // [units]
    .Input("initial_state: T")   // [batch, units]
    .Input("mask: bool")         // [batch, time], or [0] when has_mask is false
    .Output("states: T")         // [batch, time, units]
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    });

REGISTER_OP("IndRNNBackward")
    .Attr("T: {float, double}")
    .Attr("activation: {'relu', 'tanh', 'sigmoid', 'linear'}")
    .Attr("has_mask: bool")
    .Input("weight: T")            // [units]
    .Input("initial_state: T")     // [batch, units]
    .Input("mask: bool")           // [batch, time] or [0]
    .Input("states: T")            // [batch, time, units]
    .Input("grad_states: T")       // [batch, time, units], or [0] if none reached them
    .Input("grad_last_state: T")   // [batch, units]
    .Output("grad_projected: T")   // [batch, time, units]
    .Output("grad_weight: T")      // [units]
    .Output("grad_initial_state: T")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(3));
      c->set_output(1, c->input(0));
      c->set_output(2, c->input(1));
      return absl::OkStatus();
    });

template <typename T>
class IndRNNForwardOp : public OpKernel {
 public:
  explicit IndRNNForwardOp(OpKernelConstruction* context) : OpKernel(context) {
    std::string activation;
    OP_REQUIRES_OK(context, context->GetAttr("activation", &activation));
    OP_REQUIRES_OK(context, context->GetAttr("has_mask", &has_mask_));
    activation_ = ParseActivation(activation);
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& projected = context->input(0);
    const Tensor& weight = context->input(1);
    const Tensor& initial_state = context->input(2);
    const Tensor& mask = context->input(3);
    OP_REQUIRES(context, projected.dims() == 3,
                absl::InvalidArgumentError("projected must be [batch, time, units]"));
    const int64 batch = projected.dim_size(0), steps = projected.dim_size(1),
                units = projected.dim_size(2);
    OP_REQUIRES(context, weight.NumElements() == units &&
                             initial_state.NumElements() == batch * units,
                absl::InvalidArgumentError("weight/initial_state shapes do not match"));
    OP_REQUIRES(context, !has_mask_ || mask.NumElements() == steps * batch,
                absl::InvalidArgumentError("mask must be [batch, time]"));
    Tensor* states = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, projected.shape(), &states));

    const T* z = projected.flat<T>().data();
    const T* u = weight.flat<T>().data();
    const T* h0 = initial_state.flat<T>().data();
    const bool* valid = has_mask_ ? mask.flat<bool>().data() : nullptr;
    T* out = states->flat<T>().data();
    const Activation activation = activation_;

    auto rows = [&](int64 begin, int64 end) {
      switch (activation) {
        case Activation::kRelu:
          ForwardRows<T, Activation::kRelu>(z, u, h0, valid, out, begin, end, steps, units);
          break;
        case Activation::kTanh:
          ForwardRows<T, Activation::kTanh>(z, u, h0, valid, out, begin, end, steps, units);
          break;
        case Activation::kSigmoid:
          ForwardRows<T, Activation::kSigmoid>(z, u, h0, valid, out, begin, end, steps, units);
          break;
        default:
          ForwardRows<T, Activation::kLinear>(z, u, h0, valid, out, begin, end, steps, units);
      }
    };
    auto* workers = context->device()->tensorflow_cpu_worker_threads()->workers;
    tensorflow::Shard(workers->NumThreads(), workers, batch,
                      kCostPerRowStep * steps, rows);
  }

 private:
  Activation activation_;
  bool has_mask_;
};

template <typename T>
class IndRNNBackwardOp : public OpKernel {
 public:
  explicit IndRNNBackwardOp(OpKernelConstruction* context) : OpKernel(context) {
    std::string activation;
    OP_REQUIRES_OK(context, context->GetAttr("activation", &activation));
    OP_REQUIRES_OK(context, context->GetAttr("has_mask", &has_mask_));
    activation_ = ParseActivation(activation);
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& weight = context->input(0);
    const Tensor& initial_state = context->input(1);
    const Tensor& mask = context->input(2);
    const Tensor& states = context->input(3);
    const Tensor& grad_states = context->input(4);
    const Tensor& grad_last_state = context->input(5);
    OP_REQUIRES(context, states.dims() == 3,
                absl::InvalidArgumentError("states must be [batch, time, units]"));
    const int64 batch = states.dim_size(0), steps = states.dim_size(1),
                units = states.dim_size(2);
    const bool has_grad_states = grad_states.NumElements() > 0;
    OP_REQUIRES(context, !has_grad_states || grad_states.shape() == states.shape(),
                absl::InvalidArgumentError("grad_states must match states"));

    Tensor* grad_projected = nullptr;
    Tensor* grad_weight = nullptr;
    Tensor* grad_initial_state = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, states.shape(), &grad_projected));
    OP_REQUIRES_OK(context, context->allocate_output(1, weight.shape(), &grad_weight));
    OP_REQUIRES_OK(context,
                   context->allocate_output(2, initial_state.shape(), &grad_initial_state));

    const T* u = weight.flat<T>().data();
    const T* h0 = initial_state.flat<T>().data();
    const bool* valid = has_mask_ ? mask.flat<bool>().data() : nullptr;
    const T* h = states.flat<T>().data();
    const T* e = has_grad_states ? grad_states.flat<T>().data() : nullptr;
    const T* e_last = grad_last_state.flat<T>().data();
    T* dz = grad_projected->flat<T>().data();
    T* dh0 = grad_initial_state->flat<T>().data();
    const Activation activation = activation_;

    // Each shard sums its own du; the shards' sums are added at the end.
    auto* workers = context->device()->tensorflow_cpu_worker_threads()->workers;
    const int shards = std::max(1, std::min<int>(workers->NumThreads(), batch));
    std::vector<double> partial_du(static_cast<size_t>(shards) * units, 0.0);
    const int64 rows_per_shard = (batch + shards - 1) / shards;

    auto run_shard = [&](int64 shard_begin, int64 shard_end) {
      for (int64 shard = shard_begin; shard < shard_end; ++shard) {
        const int64 begin = shard * rows_per_shard;
        const int64 end = std::min(batch, begin + rows_per_shard);
        double* du = partial_du.data() + shard * units;
        // `carried` holds dL/dh_t coming from step t+1, per row of the shard.
        std::vector<T> carried(static_cast<size_t>(std::max<int64>(0, end - begin)) * units);
        for (int64 b = begin; b < end; ++b)
          for (int64 k = 0; k < units; ++k)
            carried[(b - begin) * units + k] = e_last[b * units + k];
        T* g = carried.data();
        switch (activation) {
          case Activation::kRelu:
            BackwardRows<T, Activation::kRelu>(u, h0, valid, h, e, dz, g, du, begin, end,
                                               steps, units);
            break;
          case Activation::kTanh:
            BackwardRows<T, Activation::kTanh>(u, h0, valid, h, e, dz, g, du, begin, end,
                                               steps, units);
            break;
          case Activation::kSigmoid:
            BackwardRows<T, Activation::kSigmoid>(u, h0, valid, h, e, dz, g, du, begin, end,
                                                  steps, units);
            break;
          default:
            BackwardRows<T, Activation::kLinear>(u, h0, valid, h, e, dz, g, du, begin, end,
                                                 steps, units);
        }
        for (int64 b = begin; b < end; ++b)
          for (int64 k = 0; k < units; ++k) dh0[b * units + k] = carried[(b - begin) * units + k];
      }
    };
    tensorflow::Shard(workers->NumThreads(), workers, shards,
                      kCostPerRowStep * steps * rows_per_shard, run_shard);

    T* dw = grad_weight->flat<T>().data();
    for (int64 k = 0; k < units; ++k) {
      double total = 0.0;
      for (int shard = 0; shard < shards; ++shard) total += partial_du[shard * units + k];
      dw[k] = static_cast<T>(total);
    }
  }

 private:
  Activation activation_;
  bool has_mask_;
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
