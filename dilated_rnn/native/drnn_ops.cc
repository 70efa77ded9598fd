// Fused CPU kernels for one dilated layer of the TF1 cells (BasicRNNCell,
// BasicLSTMCell, GRUCell): forward and backward over a whole sequence.
//
// Tensors are time-major, [time, batch, features], and are read in place as
// the dilated sequence: with dilation r, dilated step i is times
// i*r ... i*r + r - 1, i.e. the [r * batch, features] block starting at time
// i*r, whose rows are (phase, batch) pairs in phase-major order. Every row is
// an independent recurrence; in the last dilated step only the rows whose
// time exists are computed, so no padding is ever stored. Rows are
// cut into tiles (SplitRows), tiles into a few contiguous parts, and
// the parts run on TensorFlow's CPU thread pool; a tile runs its whole time
// loop with its state in cache.
//
// Everything a step needs is done inside the kernel, in cache: the input
// projection x @ W_x + b, the recurrence, and in the backward pass the input
// gradient and the weight and bias gradients (accumulated per part, summed in
// a fixed order, so results do not depend on scheduling). Of the tensors of
// size [time, batch, gates * units] only the gate activations are written
// (once, by the forward pass, for the backward pass to read instead of
// recomputing them); the projected inputs and the pre-activation gradients
// never leave the cache.
//
// The backward pass starts each tile at the last step that a nonzero
// gradient reaches (BackwardTile): a loss that reads only some outputs leaves
// most rows of a stack's upper layers with exactly zero gradients. Given
// the phases its caller reads (attr `phases`), the forward op also skips the
// phases whose outputs nothing reads (drnn_phases.h), forward and backward.
//
// The maths is that of dilated_rnn/kernels.py; the Python tests compare the
// two and both against independent references.
//
// The code is in this file and the headers beside it, one translation unit:
// drnn_vectors.h (native-width vectors, the sigmoid, streaming stores),
// drnn_products.h (the register-tiled products), drnn_forward.h (the cells,
// the Problem, the forward tile), drnn_backward.h (the backward tile) and
// drnn_phases.h (which phases are computed);
// this file reads the op's inputs, cuts the rows into tiles and registers the
// ops. The build's cache key covers the headers too (native/build.py).
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "drnn_backward.h"
#include "drnn_phases.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

// Rows per tile, at most: a tile's state and gates stay in L1/L2 across its
// steps. Smaller sequences get smaller tiles (at least kMinTileRows), so that
// there are several tiles per thread to balance a busy machine.
constexpr Index kTileRows = 64;
constexpr Index kMinTileRows = 16;
constexpr Index kTilesPerThread = 4;

// Reads the inputs shared by both ops and packs the weights; on failure the
// context holds the error.
template <typename T>
void ReadProblem(OpKernelContext* context, Cell cell, bool has_mask, float forget_bias,
                 Index rate, Problem<T>* p) {
  const Tensor& inputs = context->input(0);
  const Tensor& input_kernel = context->input(1);
  const Tensor& bias = context->input(2);
  const Tensor& recurrent = context->input(3);
  const Tensor& candidate = context->input(4);
  const Tensor& mask = context->input(5);
  OP_REQUIRES(context, inputs.dims() == 3 && input_kernel.dims() == 2 && recurrent.dims() == 2,
              absl::InvalidArgumentError("inputs must be [steps, rows, depth], kernels 2-D"));
  OP_REQUIRES(context, rate >= 1, absl::InvalidArgumentError("rate must be >= 1"));
  p->cell = cell;
  p->time = inputs.dim_size(0);
  p->batch = inputs.dim_size(1);
  p->rate = rate;
  p->steps = (p->time + rate - 1) / rate;
  p->rows = rate * p->batch;
  p->depth = inputs.dim_size(2);
  p->units = recurrent.dim_size(0);
  const Index units = p->units, width = p->width(), recurrent_width = RecurrentGates(cell) * units;
  OP_REQUIRES(context,
              input_kernel.dim_size(0) == p->depth && input_kernel.dim_size(1) == width &&
                  bias.NumElements() == width && recurrent.dim_size(1) == recurrent_width,
              absl::InvalidArgumentError("kernel, bias and input shapes do not match"));
  OP_REQUIRES(context,
              cell != Cell::kGru || (candidate.dims() == 2 && candidate.dim_size(0) == units &&
                                     candidate.dim_size(1) == units),
              absl::InvalidArgumentError("candidate_kernel must be [units, units]"));
  OP_REQUIRES(context, !has_mask || mask.NumElements() == p->time * p->batch,
              absl::InvalidArgumentError("mask must be [time, batch]"));
  p->inputs = inputs.flat<T>().data();
  p->mask = has_mask ? mask.flat<bool>().data() : nullptr;

  // LSTM: scale the j columns by 2 and fold forget_bias into the bias (see
  // Problem); the transposed copies keep the true weights.
  auto scale = [&](Index column) {
    return cell == Cell::kLstm && column >= units && column < 2 * units ? T(2) : T(1);
  };
  const T* w = input_kernel.flat<T>().data();
  const Index gate_columns = cell == Cell::kGru ? 2 * units : width;
  p->input_kernel.Reset(p->depth, gate_columns);
  if (cell == Cell::kGru) p->input_candidate.Reset(p->depth, units);
  p->transposed.Reset(width, units + p->depth);
  for (Index a = 0; a < p->depth; ++a)
    for (Index b = 0; b < width; ++b) {
      if (b < gate_columns)
        p->input_kernel.at(a, b) = scale(b) * w[a * width + b];
      else
        p->input_candidate.at(a, b - gate_columns) = w[a * width + b];
      p->transposed.at(b, units + a) = w[a * width + b];
    }
  const T* u = recurrent.flat<T>().data();
  p->recurrent.Reset(units, recurrent_width);
  for (Index a = 0; a < units; ++a)
    for (Index b = 0; b < recurrent_width; ++b) {
      p->recurrent.at(a, b) = scale(b) * u[a * recurrent_width + b];
      p->transposed.at(b, a) = u[a * recurrent_width + b];
    }
  if (cell == Cell::kGru) {
    const T* c = candidate.flat<T>().data();
    p->candidate.Reset(units, units);
    p->candidate_t.Reset(units, units);
    for (Index a = 0; a < units; ++a)
      for (Index b = 0; b < units; ++b) {
        p->candidate.at(a, b) = c[a * units + b];
        p->candidate_t.at(b, a) = c[a * units + b];
      }
  }
  const T* b = bias.flat<T>().data();
  T poison(0);  // 0 * every weight: NaN iff one is not finite
  for (const Tensor* weights : {&input_kernel, &bias, &recurrent, &candidate})
    poison += (ConstVec<T>(weights->flat<T>().data(), weights->NumElements()) * T(0)).sum();
  p->finite_weights = poison == T(0);
  p->bias.assign(Padded<T>(width) + kSlack, T(0));
  for (Index k = 0; k < width; ++k) {
    const bool forget = cell == Cell::kLstm && k >= 2 * units && k < 3 * units;
    p->bias[k] = scale(k) * b[k] + (forget ? static_cast<T>(forget_bias) : T(0));
  }
}

// How the rows are cut: tiles of at most `tile_rows` within each range (a
// tile never mixes computed and skipped rows), grouped into `parts`
// contiguous runs of tiles (a part's tiles run in order on one thread, with
// their own weight-gradient sums).
struct Split {
  std::vector<RowRange> tiles;  // (first row, rows)
  Index parts;
};

Split SplitRows(OpKernelContext* context, const std::vector<RowRange>& ranges) {
  Index rows = 0;
  for (const auto& range : ranges) rows += range.second - range.first;
  const Index threads = context->device()->tensorflow_cpu_worker_threads()->num_threads;
  const Index wanted = std::max<Index>(1, kTilesPerThread * threads);
  Index tile_rows = (rows + wanted - 1) / wanted;
  tile_rows = std::min(kTileRows, std::max(kMinTileRows, (tile_rows + 7) / 8 * 8));
  Split split;
  for (const auto& range : ranges)
    for (Index first = range.first; first < range.second; first += tile_rows)
      split.tiles.push_back({first, std::min(tile_rows, range.second - first)});
  split.parts = std::max<Index>(1, std::min<Index>(split.tiles.size(), wanted));
  return split;
}

// Runs `work(part, first_row, rows)` for every tile on the CPU thread pool;
// `cost_per_row` is a rough count of flops for the sharder.
template <typename Work>
void RunParts(OpKernelContext* context, const Split& split, Index cost_per_row, Work work) {
  auto* workers = context->device()->tensorflow_cpu_worker_threads()->workers;
  const Index tiles = split.tiles.size();
  Index rows = 0;
  for (const auto& tile : split.tiles) rows += tile.second;
  tensorflow::Shard(workers->NumThreads(), workers, split.parts,
                    cost_per_row * rows / split.parts, [&](int64_t begin, int64_t end) {
                      for (Index part = begin; part < end; ++part)
                        for (Index tile = tiles * part / split.parts;
                             tile < tiles * (part + 1) / split.parts; ++tile)
                          work(part, split.tiles[tile].first, split.tiles[tile].second);
                    });
}

// Runs `work(begin, end)` over ranges of `steps` dilated steps on the CPU
// thread pool; `cost_per_step` is a rough count of operations.
auto StepsOnThreads(OpKernelContext* context, Index steps) {
  return [context, steps](Index cost_per_step, auto work) {
    auto* workers = context->device()->tensorflow_cpu_worker_threads()->workers;
    tensorflow::Shard(workers->NumThreads(), workers, steps, cost_per_step,
                      [&](int64_t begin, int64_t end) { work(begin, end); });
  };
}

class Attributes {
 public:
  explicit Attributes(OpKernelConstruction* context) {
    std::string cell;
    OP_REQUIRES_OK(context, context->GetAttr("cell", &cell));
    OP_REQUIRES_OK(context, context->GetAttr("has_mask", &has_mask_));
    OP_REQUIRES_OK(context, context->GetAttr("forget_bias", &forget_bias_));
    OP_REQUIRES_OK(context, context->GetAttr("rate", &rate_));
    cell_ = ParseCell(cell);
  }

 protected:
  Cell cell_;
  bool has_mask_;
  float forget_bias_;
  int rate_;
};

template <typename T>
class ForwardOp : public OpKernel, Attributes {
 public:
  explicit ForwardOp(OpKernelConstruction* context) : OpKernel(context), Attributes(context) {
    OP_REQUIRES_OK(context, context->GetAttr("phases", &phases_));
    for (int phase : phases_)
      OP_REQUIRES(context, phase >= 0 && phase < rate_,
                  absl::InvalidArgumentError("phases must be in [0, rate)"));
  }

  void Compute(OpKernelContext* context) override {
    Problem<T> p;
    ReadProblem(context, cell_, has_mask_, forget_bias_, rate_, &p);
    if (!context->status().ok()) return;
    const TensorShape states_shape({p.time, p.batch, p.units});
    Tensor *hidden = nullptr, *cells = nullptr, *gates = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, states_shape, &hidden));
    OP_REQUIRES_OK(context,
                   context->allocate_output(
                       1, cell_ == Cell::kLstm ? states_shape : TensorShape({0}), &cells));
    OP_REQUIRES_OK(context, context->allocate_output(
                                2,
                                cell_ == Cell::kRnn ? TensorShape({0})
                                                    : TensorShape({p.time, p.batch, p.width()}),
                                &gates));
    Tensor* finite = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(3, TensorShape({p.rows}), &finite));
    T* hidden_data = hidden->flat<T>().data();
    T* cells_data = cells->flat<T>().data();
    T* gates_data = gates->flat<T>().data();
    bool* finite_data = finite->flat<bool>().data();
    Tensor* computed = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(4, TensorShape({p.rate}), &computed));
    const auto for_steps = StepsOnThreads(context, p.steps);
    const std::vector<bool> phases = PhasesToCompute(p, phases_, for_steps);
    std::copy(phases.begin(), phases.end(), computed->flat<bool>().data());
    const auto ranges = RowRanges(p.batch, phases);
    if (SkipsAny(phases)) {
      std::fill(finite_data, finite_data + p.rows, true);
      ZeroSkippedRows(p, ranges, hidden_data, p.units, for_steps);
      if (cell_ == Cell::kLstm) ZeroSkippedRows(p, ranges, cells_data, p.units, for_steps);
    }
    RunParts(context, SplitRows(context, ranges), p.steps * p.width() * (p.depth + p.units + 10),
             [&](Index, Index first, Index m) {
               ForwardTile(p, first, m, hidden_data, cells_data, gates_data, finite_data);
             });
  }

 private:
  std::vector<int> phases_;  // the phases the caller reads; empty: all
};

template <typename T>
class BackwardOp : public OpKernel, Attributes {
 public:
  explicit BackwardOp(OpKernelConstruction* context) : OpKernel(context), Attributes(context) {}

  void Compute(OpKernelContext* context) override {
    Problem<T> p;
    ReadProblem(context, cell_, has_mask_, forget_bias_, rate_, &p);
    if (!context->status().ok()) return;
    const Tensor& hidden = context->input(6);
    const Tensor& cells = context->input(7);
    const Tensor& gates = context->input(8);
    const Tensor& finite = context->input(9);
    const Tensor& computed = context->input(10);
    const Tensor& grad_hidden = context->input(11);
    const TensorShape states_shape({p.time, p.batch, p.units});
    OP_REQUIRES(context,
                hidden.shape() == states_shape && grad_hidden.shape() == states_shape &&
                    finite.NumElements() == p.rows && computed.NumElements() == p.rate &&
                    (cell_ != Cell::kLstm || cells.shape() == states_shape) &&
                    (cell_ == Cell::kRnn ||
                     gates.shape() == TensorShape({p.time, p.batch, p.width()})),
                absl::InvalidArgumentError(
                    "hidden, cells, gates, finite, computed must be the forward op's outputs"));
    Tensor* outputs[5];
    const TensorShape shapes[5] = {
        context->input(0).shape(), context->input(1).shape(), context->input(2).shape(),
        context->input(3).shape(),
        cell_ == Cell::kGru ? context->input(4).shape() : TensorShape({0, 0})};
    for (int k = 0; k < 5; ++k)
      OP_REQUIRES_OK(context, context->allocate_output(k, shapes[k], &outputs[k]));

    const bool* computed_data = computed.flat<bool>().data();
    const std::vector<bool> phases(computed_data, computed_data + p.rate);
    const auto ranges = RowRanges(p.batch, phases);
    const Split split = SplitRows(context, ranges);
    std::vector<Gradients<T>> grads(split.parts, Gradients<T>(p));
    const T* hidden_data = hidden.flat<T>().data();
    const T* cells_data = cell_ == Cell::kLstm ? cells.flat<T>().data() : nullptr;
    const T* gates_data = cell_ == Cell::kRnn ? nullptr : gates.flat<T>().data();
    const T* grad_data = grad_hidden.flat<T>().data();
    T* grad_inputs = outputs[0]->flat<T>().data();
    if (SkipsAny(phases))
      ZeroSkippedRows(p, ranges, grad_inputs, p.depth, StepsOnThreads(context, p.steps));
    RunParts(context, split, p.steps * p.width() * (3 * (p.depth + p.units) + 20),
             [&](Index part, Index first, Index m) {
               BackwardTile(p, first, m, hidden_data, cells_data, gates_data, grad_data,
                            finite.flat<bool>().data(), grad_inputs, &grads[part]);
             });

    // Sum the parts in order, then unpad into the outputs.
    std::vector<double> total(grads[0].total.size(), 0.0);
    for (const auto& part : grads)
      for (size_t i = 0; i < total.size(); ++i) total[i] += part.total[i];
    const Index width = p.width(), units = p.units;
    const Index recurrent_width = RecurrentGates(cell_) * units;
    const Gradients<T>& layout = grads[0];
    auto unpad = [&](Index offset, Index rows, Index cols, T* out) {
      const Index stride = Padded<T>(cols);
      for (Index r = 0; r < rows; ++r)
        for (Index c = 0; c < cols; ++c)
          out[r * cols + c] = static_cast<T>(total[offset + r * stride + c]);
    };
    unpad(0, p.depth, width, outputs[1]->flat<T>().data());
    unpad(layout.input_size + layout.recurrent_size + layout.candidate_size, 1, width,
          outputs[2]->flat<T>().data());
    unpad(layout.input_size, units, recurrent_width, outputs[3]->flat<T>().data());
    if (cell_ == Cell::kGru)
      unpad(layout.input_size + layout.recurrent_size, units, units,
            outputs[4]->flat<T>().data());
  }
};

}  // namespace

REGISTER_OP("DilatedRnnForward")
    .Attr("T: {float, double}")
    .Attr("cell: {'rnn', 'lstm', 'gru'}")
    .Attr("forget_bias: float = 1.0")
    .Attr("has_mask: bool")
    .Attr("rate: int >= 1 = 1")
    .Attr("phases: list(int) = []")  // the phases read (drnn_phases.h); []: all
    .Input("inputs: T")            // [time, batch, depth]
    .Input("input_kernel: T")      // [depth, gates * units]
    .Input("bias: T")              // [gates * units]
    .Input("kernel: T")            // [units, units * (1 | 4 | 2)]
    .Input("candidate_kernel: T")  // GRU: [units, units]; else unused
    .Input("mask: bool")           // [time, batch], or [0]
    .Output("hidden: T")           // [time, batch, units]
    .Output("cells: T")            // LSTM: [time, batch, units]; else [0]
    .Output("gates: T")            // LSTM, GRU: [time, batch, gates * units]
                                   // (for the backward op); RNN: [0]
    .Output("finite: bool")        // [rate * batch]: whether a dilated row's
                                   // inputs and states are all finite
    .Output("computed: bool")      // [rate]: the phases computed (drnn_phases.h)
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      auto inputs = c->input(0);
      auto kernel = c->input(3);
      auto input_kernel = c->input(1);
      if (!c->RankKnown(inputs) || !c->RankKnown(kernel) || !c->RankKnown(input_kernel)) {
        for (int k = 0; k < 5; ++k) c->set_output(k, c->UnknownShape());
        return absl::OkStatus();
      }
      auto states = c->MakeShape({c->Dim(inputs, 0), c->Dim(inputs, 1), c->Dim(kernel, 0)});
      std::string cell;
      TF_RETURN_IF_ERROR(c->GetAttr("cell", &cell));
      c->set_output(0, states);
      c->set_output(1, cell == "lstm" ? states : c->MakeShape({0}));
      c->set_output(2, cell == "rnn" ? c->MakeShape({0})
                                     : c->MakeShape({c->Dim(inputs, 0), c->Dim(inputs, 1),
                                                     c->Dim(input_kernel, 1)}));
      c->set_output(3, c->Vector(c->UnknownDim()));
      c->set_output(4, c->Vector(c->UnknownDim()));
      return absl::OkStatus();
    });

REGISTER_OP("DilatedRnnBackward")
    .Attr("T: {float, double}")
    .Attr("cell: {'rnn', 'lstm', 'gru'}")
    .Attr("forget_bias: float = 1.0")
    .Attr("has_mask: bool")
    .Attr("rate: int >= 1 = 1")
    .Input("inputs: T")
    .Input("input_kernel: T")
    .Input("bias: T")
    .Input("kernel: T")
    .Input("candidate_kernel: T")
    .Input("mask: bool")
    .Input("hidden: T")                 // the forward op's outputs
    .Input("cells: T")
    .Input("gates: T")
    .Input("finite: bool")
    .Input("computed: bool")
    .Input("grad_hidden: T")            // [time, batch, units]
    .Output("grad_inputs: T")
    .Output("grad_input_kernel: T")
    .Output("grad_bias: T")
    .Output("grad_kernel: T")
    .Output("grad_candidate_kernel: T")  // GRU; else [0, 0]
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      std::string cell;
      TF_RETURN_IF_ERROR(c->GetAttr("cell", &cell));
      for (int k = 0; k < 4; ++k) c->set_output(k, c->input(k));
      c->set_output(4, cell == "gru" ? c->input(4) : c->MakeShape({0, 0}));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(
    Name("DilatedRnnForward").Device(tensorflow::DEVICE_CPU).TypeConstraint<float>("T"),
    ForwardOp<float>);
REGISTER_KERNEL_BUILDER(
    Name("DilatedRnnForward").Device(tensorflow::DEVICE_CPU).TypeConstraint<double>("T"),
    ForwardOp<double>);
REGISTER_KERNEL_BUILDER(
    Name("DilatedRnnBackward").Device(tensorflow::DEVICE_CPU).TypeConstraint<float>("T"),
    BackwardOp<float>);
REGISTER_KERNEL_BUILDER(
    Name("DilatedRnnBackward").Device(tensorflow::DEVICE_CPU).TypeConstraint<double>("T"),
    BackwardOp<double>);
