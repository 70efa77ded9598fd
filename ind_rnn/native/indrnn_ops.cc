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
//
// The loops are in the headers beside this file, one translation unit:
// indrnn_activations.h, indrnn_forward.h and indrnn_backward.h; this file
// checks the ops' inputs, shards the rows and registers the ops. The build's
// cache key covers the headers too (build.py).
#include <algorithm>
#include <string>
#include <vector>

#include "indrnn_activations.h"
#include "indrnn_backward.h"
#include "indrnn_forward.h"

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

// Cost hint for the sharder: enough per row that small batches stay on one thread.
constexpr int64 kCostPerRowStep = 2000;
constexpr int kShardsPerThread = 4;  // backward shards per thread (see IndRNNBackwardOp)

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
