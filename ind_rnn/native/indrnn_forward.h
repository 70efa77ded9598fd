// The IndRNN kernels' forward recurrence (indrnn_ops.cc): where a step's input
// term comes from (precomputed projections, or narrow inputs projected in the
// loop), and the loop over a shard's batch rows.
#ifndef IND_RNN_NATIVE_INDRNN_FORWARD_H_
#define IND_RNN_NATIVE_INDRNN_FORWARD_H_

#include <vector>

#include "indrnn_activations.h"

namespace {

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

}  // namespace

#endif  // IND_RNN_NATIVE_INDRNN_FORWARD_H_
