// The IndRNN kernels' backward recurrence (indrnn_ops.cc): the gradient sums,
// where dL/dz_t goes (the projections' gradient, or the raw inputs' and the
// input kernel's), the prefetches of the descending walk, and the loop over a
// shard's batch rows.
#ifndef IND_RNN_NATIVE_INDRNN_BACKWARD_H_
#define IND_RNN_NATIVE_INDRNN_BACKWARD_H_

#include <vector>

#include "indrnn_activations.h"

namespace {

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

}  // namespace

#endif  // IND_RNN_NATIVE_INDRNN_BACKWARD_H_
