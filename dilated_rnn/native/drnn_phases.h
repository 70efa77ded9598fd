// Computing only the phases a caller reads (the ops' attr `phases`).
//
// A stack whose caller reads only some outputs (a classifier reading the
// last one) needs, in a layer of dilation r, only the phases that those
// outputs depend on: one of r in the demo stack
// (dilated_rnn.dilation.phases_read). The forward op then computes those
// rows; the other rows' states are zeros and their gates are not written.
//
// Skipping is exact only where the full computation would have given exactly
// zero gradients through the skipped rows: their outputs are not read, and
// every value they would have held is finite (0 * inf would be NaN). With
// finite weights and inputs a row's states are finite (tanh, sigmoids and
// GRU mixes are bounded, the LSTM cell grows by at most 1 a step), so a phase
// is skipped only if the weights and all of its inputs are finite; any other
// phase is computed, so NaN and inf reach the gradients as in the reference.
// The forward op says which phases it computed (output `computed`, [rate]);
// the backward op computes the same rows and writes zeros for the others'
// input gradients.
#ifndef DILATED_RNN_NATIVE_DRNN_PHASES_H_
#define DILATED_RNN_NATIVE_DRNN_PHASES_H_

#include <algorithm>
#include <utility>
#include <vector>

#include "drnn_forward.h"

namespace {

using RowRange = std::pair<Index, Index>;  // [first, end) of phase-major rows

// Per phase, whether it is computed: those in `wanted` (empty: all), and any
// other whose inputs are not all finite (or every phase, if a weight is not).
// `for_steps(cost_per_step, work)` runs `work(begin, end)` over ranges of the
// dilated steps, maybe in parallel.
template <typename T, typename ForSteps>
std::vector<bool> PhasesToCompute(const Problem<T>& p, const std::vector<int>& wanted,
                                  ForSteps for_steps) {
  std::vector<bool> computed(p.rate, wanted.empty() || !p.finite_weights);
  for (int phase : wanted) computed[phase] = true;
  if (std::all_of(computed.begin(), computed.end(), [](bool c) { return c; })) return computed;
  // Per step and phase, 0 * every input: NaN iff one is not finite.
  std::vector<T> poison(p.steps * p.rate, T(0));
  for_steps(p.rows * p.depth, [&](Index begin, Index end) {
    for (Index t = begin; t < end; ++t)
      for (Index phase = 0; phase < p.rate && p.Existing(t) > phase * p.batch; ++phase)
        if (!computed[phase])
          poison[t * p.rate + phase] =
              (ConstVec<T>(p.At(p.inputs, t, phase * p.batch, p.depth), p.batch * p.depth) *
               T(0))
                  .sum();
  });
  for (Index phase = 0; phase < p.rate; ++phase) {
    T sum(0);
    for (Index t = 0; t < p.steps; ++t) sum += poison[t * p.rate + phase];
    computed[phase] = computed[phase] || sum != T(0);
  }
  return computed;
}

// Whether some phase is skipped (its rows need zeros written).
inline bool SkipsAny(const std::vector<bool>& computed) {
  return std::find(computed.begin(), computed.end(), false) != computed.end();
}

// The computed phases' rows as contiguous ranges.
inline std::vector<RowRange> RowRanges(Index batch, const std::vector<bool>& computed) {
  std::vector<RowRange> ranges;
  for (Index phase = 0; phase < static_cast<Index>(computed.size()); ++phase) {
    if (!computed[phase]) continue;
    const Index first = phase * batch;
    if (!ranges.empty() && ranges.back().second == first)
      ranges.back().second = first + batch;
    else
      ranges.push_back({first, first + batch});
  }
  return ranges;
}

// Zeros the [rows, features] blocks of `data` that `ranges` leaves out, at
// every dilated step where they exist.
template <typename T, typename ForSteps>
void ZeroSkippedRows(const Problem<T>& p, const std::vector<RowRange>& ranges, T* data,
                     Index features, ForSteps for_steps) {
  for_steps(p.rows * features / 4, [&](Index begin, Index end) {
    for (Index t = begin; t < end; ++t) {
      Index row = 0;
      auto zero_until = [&](Index end_row) {
        end_row = std::min(end_row, p.Existing(t));
        if (end_row > row) StreamZeros(p.At(data, t, row, features), (end_row - row) * features);
      };
      for (const auto& range : ranges) {
        zero_until(range.first);
        row = range.second;
      }
      zero_until(p.rows);
    }
    StreamFence();  // this thread's streaming stores are done
  });
}

}  // namespace

#endif  // DILATED_RNN_NATIVE_DRNN_PHASES_H_
