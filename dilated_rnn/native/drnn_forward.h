// The DilatedRNN kernels' forward pass (drnn_ops.cc): the cells, the layer's
// Problem (inputs, packed weights, the dilated layout), one step's gates and a
// tile's whole time loop.
#ifndef DILATED_RNN_NATIVE_DRNN_FORWARD_H_
#define DILATED_RNN_NATIVE_DRNN_FORWARD_H_

#include <string>

#include "drnn_products.h"

namespace {

enum class Cell { kRnn, kLstm, kGru };

Cell ParseCell(const std::string& name) {
  if (name == "lstm") return Cell::kLstm;
  if (name == "gru") return Cell::kGru;
  return Cell::kRnn;
}

// Projected features per unit, and columns of the recurrent kernel per unit.
Index Gates(Cell cell) { return cell == Cell::kLstm ? 4 : cell == Cell::kGru ? 3 : 1; }
Index RecurrentGates(Cell cell) { return cell == Cell::kLstm ? 4 : cell == Cell::kGru ? 2 : 1; }

// Scratch of one tile: named buffers with slack.
template <typename T>
struct Buffer {
  std::vector<T> data;
  Buffer(Index size) : data(size + kSlack, T(0)) {}
  T* get() { return data.data(); }
};

// The inputs shared by both ops, with the weights packed for Product:
// W_x [D, G*H], the recurrent kernel [H, R*H] and (GRU) the candidate's
// [H, H], plus transposed copies for the backward pass. For the LSTM the
// packed forward copies hold 2 * (the j columns) and the bias holds
// forget_bias in the f columns, so that one sigmoid over all gates gives
// i, (tanh(j) + 1) / 2, sigmoid(f + forget_bias), o.
template <typename T>
struct Problem {
  Cell cell;
  // time: the sequence length; steps = ceil(time / rate) dilated steps of
  // rows = rate * batch rows.
  Index time = 0, batch = 0, rate = 1, steps = 0, rows = 0, depth = 0, units = 0;
  const T* inputs = nullptr;  // [time, batch, depth]
  const bool* mask = nullptr;  // [time, batch], or null
  bool finite_weights = true;  // every weight and bias finite
  // Forward: W_x [D, G*H] (GRU: its r, u columns [D, 2H], and the
  // candidate's [D, H] in input_candidate), U [H, R*H], U_c [H, H].
  Packed<T> input_kernel, input_candidate, recurrent, candidate;
  // Backward: [U^T | W_x^T] side by side, [G*H, H + D] (U^T zero in the
  // GRU candidate's rows), so that one product gives dL/dh_prev and dL/dx;
  // and U_c^T.
  Packed<T> transposed, candidate_t;
  std::vector<T> bias;  // [Padded(G*H)] + slack, forward form

  Index width() const { return Gates(cell) * units; }
  template <typename P>
  P* At(P* base, Index t, Index first, Index features) const {
    return base + (t * rows + first) * features;
  }
  bool Valid(Index t, Index row) const { return mask == nullptr || mask[t * rows + row]; }
  // How many rows exist at dilated step t: all but in the last step, where
  // phases past the end are missing.
  Index Existing(Index t) const { return std::min(rows, (time - t * rate) * batch); }
  // How many of the tile's m rows starting at `first` exist at dilated step t.
  Index TileRows(Index t, Index first, Index m) const {
    return std::max<Index>(0, std::min(m, Existing(t) - first));
  }
  // The GRU's gates tensor holds, per dilated step, the [r, u] rows of all
  // its rows and then their candidate rows, so that each is written as one
  // run and read with the stride of the other per-unit arrays.
  template <typename P>
  P* GruGates(P* gates, Index t, Index first) const {
    return gates + t * rows * width() + first * 2 * units;
  }
  template <typename P>
  P* GruCandidate(P* gates, Index t, Index first) const {
    return gates + t * rows * width() + Existing(t) * 2 * units + first * units;
  }
};

// The gates of one step for rows [first, first + m), from the layer input and
// the previous state. RNN: z = pre-activation. LSTM: z = the four sigmoids
// (see Problem). GRU: z = [r, u] sigmoids, candidate = tanh(...),
// reset_prev = r * h_prev. Each product is one register-tiled sum of its
// two terms, in the order of TF1's one product of the concatenation:
// [x, h] @ [W; U] (GRU gates: [x, h] @ [W_ru; U_ru]; candidate:
// [x, r * h] @ [W_c; U_c]). `poison` gets 0 times the first pre-activation
// of every row: NaN if one is not finite (see ForwardTile).
template <typename T>
void StepGates(const Problem<T>& p, Index t, Index first, Index m, const T* h_prev,
               T* z, T* candidate, T* reset_prev, T* poison) {
  const Index units = p.units, width = p.width();
  const T* x_rows = p.At(p.inputs, t, first, p.depth);
  const Strided<T> x{x_rows, p.depth};
  const Strided<T> h{h_prev, units};
  const Strided<T> bias{p.bias.data(), 0};
  const Term<T> terms[2] = {{x, &p.input_kernel}, {h, &p.recurrent}};
  const Index z_width = p.cell == Cell::kGru ? 2 * units : width;
  ProductSum(terms, 2, bias, z, z_width, m, false);
  T sum(0);
  for (Index i = 0; i < m; ++i) sum += z[i * z_width] * T(0);
  *poison += sum;
  if (p.cell == Cell::kRnn) return;
  SigmoidInPlace(z, m * z_width);
  if (p.cell == Cell::kLstm) return;
  for (Index i = 0; i < m; ++i)
    for (Index k = 0; k < units; ++k)
      reset_prev[i * units + k] = z[i * 2 * units + k] * h_prev[i * units + k];
  const Term<T> candidate_terms[2] = {{x, &p.input_candidate},
                                      {Strided<T>{reset_prev, units}, &p.candidate}};
  ProductSum(candidate_terms, 2, Strided<T>{p.bias.data() + 2 * units, 0}, candidate, units, m,
             false);
  Vec<T>(candidate, m * units) = Vec<T>(candidate, m * units).tanh();
}

template <typename T>
void KeepMasked(const Problem<T>& p, Index t, Index first, Index m,
                const T* previous, T* current) {
  if (p.mask == nullptr) return;
  for (Index i = 0; i < m; ++i)
    if (!p.Valid(t, first + i))
      for (Index k = 0; k < p.units; ++k) current[i * p.units + k] = previous[i * p.units + k];
}

// ------------------------------------------------------------------------
// Forward over rows [first, first + m):
//   RNN:  h' = tanh(x W + b + h U)
//   LSTM: i, j, f, o = x W + b + h U; c' = c s(f + fb) + s(i) tanh(j);
//         h' = tanh(c') s(o)
//   GRU:  r, u = s(x W_ru + b_ru + h U_ru); c = tanh(x W_c + b_c + (r h) U_c);
//         h' = u h + (1 - u) c
// A masked step keeps the previous state.
// ------------------------------------------------------------------------
// The gates tensor, [time, batch, gates * units], holds per row the LSTM's
// four sigmoids (as StepGates leaves them), or the GRU's r, u and candidate
// (laid out as Problem::GruGates says); the RNN has none (its derivative is
// read off its output).
// `finite[first .. first + tile_rows)` is set to whether every input and
// state of the tile's rows is finite: NaN and infinities in a row's history
// keep the backward pass from skipping it (see BackwardTile). It is read off
// one pre-activation per row and step. With finite weights (otherwise the
// backward skips nothing anyway), a non-finite input or previous state makes
// every pre-activation of its row non-finite (its terms are NaN or +-inf, and
// so is any sum holding one); and finite pre-activations give finite states
// (tanh, sigmoids and GRU mixes are bounded; the LSTM's cell grows by at most
// 1 a step). A pre-activation that overflows from finite numbers only keeps
// its tile from skipping, which is always exact. (It replaced a sum of 0 *
// every input and state per step: one pass over them fewer, the same speed
// within the op-level timing's noise.)
template <typename T>
void ForwardTile(const Problem<T>& p, Index first, Index tile_rows, T* hidden, T* cells,
                 T* gates, bool* finite) {
  const Index units = p.units, width = p.width();
  T poison(0);  // sum of 0 * (a pre-activation of every row and step): see above
  Buffer<T> zeros(tile_rows * units), scratch(tile_rows * width),
      candidate_buffer(tile_rows * units), reset_prev(tile_rows * units);
  for (Index t = 0; t < p.steps; ++t) {
    const Index m = p.TileRows(t, first, tile_rows), n = m * units;
    if (m == 0) continue;
    const T* h_prev = t == 0 ? zeros.get() : p.At(hidden, t - 1, first, units);
    T* h = p.At(hidden, t, first, units);
    T* g = scratch.get();
    T* candidate = candidate_buffer.get();
    StepGates(p, t, first, m, h_prev, g, candidate, reset_prev.get(), &poison);
    if (p.cell == Cell::kRnn) {
      Vec<T>(h, n) = Vec<T>(g, n).tanh();
    } else if (p.cell == Cell::kLstm) {
      const T* c_prev = t == 0 ? zeros.get() : p.At(cells, t - 1, first, units);
      T* c = p.At(cells, t, first, units);
      for (Index i = 0; i < m; ++i)
        for (Index k = 0; k < units; ++k) {
          const T* row = g + i * width;
          const T j = T(2) * row[units + k] - T(1);
          c[i * units + k] = c_prev[i * units + k] * row[2 * units + k] + row[k] * j;
        }
      Vec<T>(h, n) = Vec<T>(c, n).tanh();
      for (Index i = 0; i < m; ++i)
        for (Index k = 0; k < units; ++k) h[i * units + k] *= g[i * width + 3 * units + k];
      KeepMasked(p, t, first, m, c_prev, c);
      StreamCopy(p.At(gates, t, first, width), g, m * width);
    } else {
      for (Index i = 0; i < m; ++i)
        for (Index k = 0; k < units; ++k) {
          const T u = g[i * 2 * units + units + k];
          h[i * units + k] = u * h_prev[i * units + k] + (T(1) - u) * candidate[i * units + k];
        }
      StreamCopy(p.GruGates(gates, t, first), g, m * 2 * units);
      StreamCopy(p.GruCandidate(gates, t, first), candidate, m * units);
    }
    KeepMasked(p, t, first, m, h_prev, h);
  }
  std::fill(finite + first, finite + first + tile_rows, poison == T(0));
  StreamFence();  // the gates' non-temporal stores are done before the tile is
}

}  // namespace

#endif  // DILATED_RNN_NATIVE_DRNN_FORWARD_H_
