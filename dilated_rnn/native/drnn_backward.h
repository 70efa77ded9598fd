// The DilatedRNN kernels' backward pass (drnn_ops.cc): a part's weight-gradient
// sums and a tile's walk back through time.
#ifndef DILATED_RNN_NATIVE_DRNN_BACKWARD_H_
#define DILATED_RNN_NATIVE_DRNN_BACKWARD_H_

#include "drnn_forward.h"

namespace {

// Float sums of weight gradients are flushed into double totals this often.
constexpr Index kFlushSteps = 16;

// Weight-gradient sums of one part: float per flush period, double overall.
template <typename T>
struct Gradients {
  Index input_size, recurrent_size, candidate_size, bias_size;
  std::vector<T> input_kernel, recurrent, candidate, bias;  // padded layouts
  std::vector<double> total;

  Gradients(const Problem<T>& p)
      : input_size(p.depth * Padded<T>(p.width())),
        recurrent_size(p.units * Padded<T>(RecurrentGates(p.cell) * p.units)),
        candidate_size(p.cell == Cell::kGru ? p.units * Padded<T>(p.units) : 0),
        bias_size(Padded<T>(p.width())),
        input_kernel(input_size), recurrent(recurrent_size), candidate(candidate_size),
        bias(bias_size),
        total(input_size + recurrent_size + candidate_size + bias_size, 0.0) {}

  void Flush() {
    Index offset = 0;
    for (std::vector<T>* part : {&input_kernel, &recurrent, &candidate, &bias}) {
      for (Index i = 0; i < static_cast<Index>(part->size()); ++i) {
        total[offset + i] += (*part)[i];
        (*part)[i] = T(0);
      }
      offset += part->size();
    }
  }
};

// ------------------------------------------------------------------------
// Backward over rows [first, first + m): dL/dx for every step, and the
// weight and bias gradients added into `grads`. `carry` is dL/dh (and dL/dc)
// arriving from step t + 1; a masked step passes it through unchanged.
//
// Steps are skipped, from the last one back, for as long as no gradient has
// reached the tile: the carry is zero and the tile's rows of grad_hidden are
// all zero, so every gradient of the step is exactly zero (its dL/dx is
// written as zeros; it adds nothing to the weight gradients). A tile that no
// gradient reaches allocates nothing. A loss that reads only some outputs
// leaves most rows of a stack's upper layers in that state: with only the
// last output read, a layer of dilation r gets nonzero gradients on 1 / r of
// its rows (one phase), all of them in other rows being exactly zero.
// Skipping is exact only where the zeros would multiply finite numbers (the
// reference's 0 * inf and 0 * NaN are NaN): a tile skips nothing if a weight
// or any input or state of its rows is not finite (`finite`, from the
// forward pass).
// ------------------------------------------------------------------------
template <typename T>
void BackwardTile(const Problem<T>& p, Index first, Index tile_rows, const T* hidden,
                  const T* cells, const T* gates, const T* grad_hidden, const bool* finite,
                  T* grad_inputs, Gradients<T>* grads) {
  const Index units = p.units, width = p.width(), size = tile_rows * units;
  const bool may_skip = p.finite_weights && std::all_of(finite + first, finite + first + tile_rows,
                                                        [](bool row) { return row; });
  Index last = p.steps - 1;  // the last step that a gradient reaches
  for (; may_skip && last >= 0; --last) {
    const Index m = p.TileRows(last, first, tile_rows);
    if (m == 0) continue;  // rows missing from the last step
    if (!AllZero(p.At(grad_hidden, last, first, units), m * units)) break;
    StreamZeros(p.At(grad_inputs, last, first, p.depth), m * p.depth);
  }
  StreamFence();  // the zeros' non-temporal stores are done before the tile is
  if (last < 0) return;
  Buffer<T> zeros(size), reset_prev(size), d_pre(tile_rows * width), carry_h(size),
      carry_c(size), kept_c(size), grad(size), tanh_c(size), d_reset(size),
      back(tile_rows * (units + p.depth)), ones(tile_rows);
  std::fill(ones.get(), ones.get() + tile_rows, T(1));
  const Index recurrent_width = RecurrentGates(p.cell) * units;
  for (Index t = last, done = 0; t >= 0; --t, ++done) {
    // Rows missing from the last step keep a zero carry: nothing follows them.
    const Index m = p.TileRows(t, first, tile_rows), n = m * units;
    if (m == 0) continue;
    const T* h_prev = t == 0 ? zeros.get() : p.At(hidden, t - 1, first, units);
    // The RNN's derivative is read off its output, the others' gates off the
    // forward pass's gates.
    const T* zt = p.cell == Cell::kLstm ? p.At(gates, t, first, width) : nullptr;
    // GRU: rows of [r, u] (stride 2 * units) and of the candidate (stride units).
    const T* ru = p.cell == Cell::kGru ? p.GruGates(gates, t, first) : nullptr;
    const T* c = p.cell == Cell::kGru ? p.GruCandidate(gates, t, first) : nullptr;
    if (p.cell == Cell::kGru)
      for (Index i = 0; i < m; ++i)
        for (Index k = 0; k < units; ++k)
          reset_prev.get()[i * units + k] = ru[i * 2 * units + k] * h_prev[i * units + k];
    Vec<T>(grad.get(), n) =
        Vec<T>(carry_h.get(), n) + ConstVec<T>(p.At(grad_hidden, t, first, units), n);
    const T* g = grad.get();
    T* d = d_pre.get();
    if (p.cell == Cell::kRnn) {
      const T* h = p.At(hidden, t, first, units);
      for (Index i = 0; i < n; ++i) d[i] = g[i] * (T(1) - h[i] * h[i]);
    } else if (p.cell == Cell::kLstm) {
      const T* c_prev = t == 0 ? zeros.get() : p.At(cells, t - 1, first, units);
      Vec<T>(tanh_c.get(), n) = ConstVec<T>(p.At(cells, t, first, units), n).tanh();
      T* cc = carry_c.get();
      // Distinct arrays, said so (restrict, and no dependence between
      // iterations): gcc left this loop scalar ("complicated access pattern"),
      // a quarter of the LSTM's backward time.
      const T* __restrict__ gates_t = zt;
      const T* __restrict__ tanh_ct = tanh_c.get();
      const T* __restrict__ c_before = c_prev;
      const T* __restrict__ grad_h = g;
      T* __restrict__ d_gates = d;
      T* __restrict__ carry = cc;
      // A masked step passes dL/dc through: keep the old carry to restore it
      // there (a copy gcc split out of the loop below as a memcpy per row, 3%
      // of the step, also where nothing was masked).
      if (p.mask != nullptr) std::copy(cc, cc + n, kept_c.get());
      for (Index i = 0; i < m; ++i)
        INDEPENDENT_ITERATIONS
        for (Index k = 0; k < units; ++k) {
          const Index s = i * units + k, row = i * width;
          const T in = gates_t[row + k], j = T(2) * gates_t[row + units + k] - T(1),
                  f = gates_t[row + 2 * units + k], o = gates_t[row + 3 * units + k];
          const T tc = tanh_ct[s];
          const T d_c = carry[s] + grad_h[s] * o * (T(1) - tc * tc);
          d_gates[row + k] = d_c * j * in * (T(1) - in);
          d_gates[row + units + k] = d_c * in * (T(1) - j * j);
          d_gates[row + 2 * units + k] = d_c * c_before[s] * f * (T(1) - f);
          d_gates[row + 3 * units + k] = grad_h[s] * tc * o * (T(1) - o);
          carry[s] = d_c * f;
        }
      if (p.mask != nullptr)
        for (Index i = 0; i < m; ++i)
          if (!p.Valid(t, first + i))
            std::copy(kept_c.get() + i * units, kept_c.get() + (i + 1) * units, cc + i * units);
    } else {
      for (Index i = 0; i < m; ++i)
        for (Index k = 0; k < units; ++k) {
          const Index s = i * units + k;
          const T u = ru[i * 2 * units + units + k], cs = c[s];
          d[i * width + 2 * units + k] = g[s] * (T(1) - u) * (T(1) - cs * cs);
        }
      Product(Strided<T>{d + 2 * units, width}, p.candidate_t, Strided<T>{nullptr, 0},
              d_reset.get(), units, m, false);
      const T* __restrict__ gates_ru = ru;
      const T* __restrict__ d_r = d_reset.get();  // see the LSTM's loop
      const T* __restrict__ before = h_prev;
      const T* __restrict__ candidate_t = c;
      const T* __restrict__ grad_h = g;
      T* __restrict__ d_gates = d;
      for (Index i = 0; i < m; ++i)
        INDEPENDENT_ITERATIONS
        for (Index k = 0; k < units; ++k) {
          const Index s = i * units + k;
          const T r = gates_ru[i * 2 * units + k], u = gates_ru[i * 2 * units + units + k];
          d_gates[i * width + k] = d_r[s] * before[s] * r * (T(1) - r);
          d_gates[i * width + units + k] =
              grad_h[s] * (before[s] - candidate_t[s]) * u * (T(1) - u);
        }
    }
    // Masked steps contribute nothing but pass dL/dh through.
    if (p.mask != nullptr)
      for (Index i = 0; i < m; ++i)
        if (!p.Valid(t, first + i)) std::fill(d + i * width, d + (i + 1) * width, T(0));
    // back = d @ [U^T | W_x^T]: dL/dh_prev (through the matmuls) and dL/dx.
    const Index back_width = units + p.depth;
    T* bk = back.get();
    Product(Strided<T>{d, width}, p.transposed, Strided<T>{nullptr, 0}, bk, back_width, m,
            false);
    T* ch = carry_h.get();
    T* dx = p.At(grad_inputs, t, first, p.depth);
    // Rows of step t - 1 that exist (all of them: only the last step can miss rows).
    const Index prefetched = t > 0 ? m : 0;
    for (Index i = 0; i < m; ++i) {
      if (i < prefetched) {  // what row i of step t - 1 reads and writes
        const Index row = first + i;
        Prefetch<0>(p.At(grad_hidden, t - 1, row, units), units);
        if (t > 1) Prefetch<0>(p.At(hidden, t - 2, row, units), units);
        if (p.cell == Cell::kRnn) Prefetch<0>(p.At(hidden, t - 1, row, units), units);
        if (p.cell == Cell::kLstm) Prefetch<0>(p.At(gates, t - 1, row, width), width);
        if (p.cell == Cell::kGru) {
          Prefetch<0>(p.GruGates(gates, t - 1, row), 2 * units);
          Prefetch<0>(p.GruCandidate(gates, t - 1, row), units);
        }
        if (p.cell == Cell::kLstm) {
          Prefetch<0>(p.At(cells, t - 1, row, units), units);
          if (t > 1) Prefetch<0>(p.At(cells, t - 2, row, units), units);
        }
        Prefetch<0>(p.At(p.inputs, t - 1, row, p.depth), p.depth);
        Prefetch<1>(p.At(grad_inputs, t - 1, row, p.depth), p.depth);
      }
      if (p.cell == Cell::kGru) {
        for (Index k = 0; k < units; ++k) {  // h' = u h + ..., and r h feeds the candidate
          const Index s = i * units + k;
          ch[s] = bk[i * back_width + k] + (g[s] * ru[i * 2 * units + units + k] +
                                             d_reset.get()[s] * ru[i * 2 * units + k]);
        }
      } else {
        CopyRow(ch + i * units, bk + i * back_width, units);
      }
      CopyRow(dx + i * p.depth, bk + i * back_width + units, p.depth);
    }
    if (p.mask != nullptr)
      for (Index i = 0; i < m; ++i)
        if (!p.Valid(t, first + i)) std::copy(g + i * units, g + (i + 1) * units, ch + i * units);
    const Strided<T> x{p.At(p.inputs, t, first, p.depth), p.depth};
    AddOuter(x, p.depth, Strided<T>{d, width}, width, grads->input_kernel.data(), m);
    AddOuter(Strided<T>{h_prev, units}, units, Strided<T>{d, width}, recurrent_width,
             grads->recurrent.data(), m);
    if (p.cell == Cell::kGru)
      AddOuter(Strided<T>{reset_prev.get(), units}, units, Strided<T>{d + 2 * units, width},
               units, grads->candidate.data(), m);
    AddOuter(Strided<T>{ones.get(), 1}, 1, Strided<T>{d, width}, width, grads->bias.data(), m);
    if ((done + 1) % kFlushSteps == 0) grads->Flush();
  }
  grads->Flush();
}

}  // namespace

#endif  // DILATED_RNN_NATIVE_DRNN_BACKWARD_H_
