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
// most rows of a stack's upper layers with exactly zero gradients.
//
// The maths is that of dilated_rnn/kernels.py; the Python tests compare the
// two and both against independent references.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "Eigen/Core"
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
using Index = int64_t;

// Rows per tile, at most: a tile's state and gates stay in L1/L2 across its
// steps. Smaller sequences get smaller tiles (at least kMinTileRows), so that
// there are several tiles per thread to balance a busy machine.
constexpr Index kTileRows = 64;
constexpr Index kMinTileRows = 16;
constexpr Index kTilesPerThread = 4;
// Float sums of weight gradients are flushed into double totals this often.
constexpr Index kFlushSteps = 16;
// The products' vectors (GCC/Clang vector extensions) are the target's
// native width, and their register tiles are sized to its register file:
// a vector wider than the registers would be split, and a tile with more
// accumulators than registers spills to the stack in the innermost loop.
//   AVX-512: 64 bytes, 32 registers; AVX/AVX2: 32 bytes, 16 registers;
//   SSE (x86-64-v2) and other CPUs: 16 bytes, 16 registers (32 on aarch64).
#if defined(__AVX512F__)
constexpr Index kVectorBytes = 64;
constexpr int kRegisters = 32;
#elif defined(__AVX__)
constexpr Index kVectorBytes = 32;
constexpr int kRegisters = 16;
#elif defined(__aarch64__)
constexpr Index kVectorBytes = 16;
constexpr int kRegisters = 32;
#else
constexpr Index kVectorBytes = 16;
constexpr int kRegisters = 16;
#endif
// Extra elements after every scratch buffer, so full-vector loads of a
// row's last chunk stay inside the allocation.
constexpr Index kSlack = 64;

template <typename T>
constexpr Index Lanes() { return kVectorBytes / static_cast<Index>(sizeof(T)); }

template <typename T>
Index Padded(Index n) { return (n + Lanes<T>() - 1) / Lanes<T>() * Lanes<T>(); }

template <typename T>
using Vec = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstVec = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// The float sigmoid of the LSTM and GRU gates: Eigen's own (TensorFlow's
// Sigmoid) less its multiplicative range reduction. Eigen halves x and squares
// exp(x / 2) so that exp never yields a denormal; here x is clamped to
// [-87.33, 16.64] instead, where exp(x) is a normal float, and S(x) below is
// 0: it would be a denormal, which TensorFlow's threads flush to zero anyway.
// Two operations fewer out of ~22 per vector, 13-15% faster through Eigen's
// packets at every level (Zen 3: 0.59 -> 0.51 ns a float with AVX2, 1.72 ->
// 1.45 with SSE), where the sigmoids were a quarter of the LSTM's forward
// time; and more accurate (worst relative error 2.1e-7 against 3.7e-7, from
// skipping the squaring). NaN stays NaN, -inf gives 0 and +inf 1, as in Eigen.
struct Sigmoid {
  template <typename Packet>
  EIGEN_STRONG_INLINE Packet packetOp(const Packet& input) const {
    using namespace Eigen::internal;  // NOLINT: Eigen's packet functions
    using Integers = typename unpacket_traits<Packet>::integer_packet;
    const Packet one = pset1<Packet>(1.0f);
    const Packet below = pcmp_lt(input, pset1<Packet>(-87.33f));
    const Packet x = pmin(input, pset1<Packet>(16.6355324f));
    // exp(x) = 2^m exp(r), x = m ln 2 + r (Cody-Waite, Cephes' constants),
    // m = x log2(e) rounded to nearest by adding 1.5 * 2^23 (the FMA rounds
    // the exact sum once): `shifted`'s low bits then hold m, and 2^m is
    // (bits + 127) << 23, the rest shifted out. It replaces Eigen's floor
    // and float-to-int conversion, which sat on the dependency chain: 14%
    // faster with AVX2, 8% with SSE (C++ microbenchmark, Zen 3). m can differ
    // from Eigen's floor(x log2(e) + 0.5) only within rounding of a half
    // integer (then r is the other side of 0, as accurate); the results were
    // the same bits on 20,480 test inputs and through the demo stack.
    const Packet magic = pset1<Packet>(12582912.0f);
    const Packet shifted = pmadd(x, pset1<Packet>(1.44269504088896341f), magic);
    const Packet m = psub(shifted, magic);
    Packet r = pmadd(m, pset1<Packet>(-0.693359375f), x);
    r = pmadd(m, pset1<Packet>(2.12194440e-4f), r);
    // exp(r): Eigen's degree 5 minimax polynomial, even and odd terms apart.
    const Packet r2 = pmul(r, r);
    const Packet even = pmadd(r2, pset1<Packet>(4.1898667812347412109375e-2f),
                              pset1<Packet>(0.49999141693115234375f));
    const Packet odd = pmadd(r2, pset1<Packet>(8.33471305668354034423828125e-3f),
                             pset1<Packet>(0.16666877269744873046875f));
    const Packet poly = pmadd(r2, pmadd(r, odd, even), padd(r, one));
    const Integers power_bits =
        plogical_shift_left<23>(padd(preinterpret<Integers>(shifted), pset1<Integers>(127)));
    const Packet e = pmul(poly, preinterpret<Packet>(power_bits));
    return pselect(below, pzero(e), pdiv(e, padd(one, e)));
  }
  float operator()(float x) const {
    if (!(x >= -87.33f)) return x < 0 ? 0.0f : x;  // -inf, below: 0; NaN stays
    const float e = std::exp(std::min(x, 16.6355324f));
    return e / (1.0f + e);
  }
};

// Sigmoid of `n` values in place: the above for float, Eigen's for double.
inline void SigmoidInPlace(float* z, Index n) {
  Vec<float>(z, n) = Vec<float>(z, n).unaryExpr(Sigmoid());
}
inline void SigmoidInPlace(double* z, Index n) { Vec<double>(z, n) = Vec<double>(z, n).logistic(); }

}  // namespace

namespace Eigen {
namespace internal {
template <>
struct functor_traits<Sigmoid> {
  enum { Cost = 20 * NumTraits<float>::MulCost, PacketAccess = packet_traits<float>::HasDiv };
};
}  // namespace internal
}  // namespace Eigen

namespace {

enum class Cell { kRnn, kLstm, kGru };

// Before a loop whose iterations are independent, where the compiler cannot
// prove it and would leave the loop scalar.
#if defined(__clang__)
#define INDEPENDENT_ITERATIONS _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define INDEPENDENT_ITERATIONS _Pragma("GCC ivdep")
#else
#define INDEPENDENT_ITERATIONS
#endif

Cell ParseCell(const std::string& name) {
  if (name == "lstm") return Cell::kLstm;
  if (name == "gru") return Cell::kGru;
  return Cell::kRnn;
}

// Projected features per unit, and columns of the recurrent kernel per unit.
Index Gates(Cell cell) { return cell == Cell::kLstm ? 4 : cell == Cell::kGru ? 3 : 1; }
Index RecurrentGates(Cell cell) { return cell == Cell::kLstm ? 4 : cell == Cell::kGru ? 2 : 1; }

// A row-major [rows, cols] matrix padded to whole vectors per row, zero
// beyond `cols`: the right-hand side of Product.
template <typename T>
struct Packed {
  Index rows = 0, cols = 0, stride = 0;
  std::vector<T> data;
  void Reset(Index r, Index c) {
    rows = r, cols = c, stride = Padded<T>(c);
    data.assign(r * stride + kSlack, T(0));
  }
  T& at(Index r, Index c) { return data[r * stride + c]; }
};

template <typename T>
struct Strided {  // rows of a row-major matrix: element (i, j) at p[i * stride + j]
  const T* p;
  Index stride;
};

// The first `width` lanes of a vector: loaded (zero beyond) or stored
// (memory beyond untouched). A partial vector (the last chunk of a row of
// 20 units is 4 of 8 or 16 lanes) moves as at most log2(lanes) pieces of
// fixed, halving sizes (one 16-byte move for 4 of 8 floats), never element
// by element; AVX-512 has masked instructions for it.
template <typename T>
struct Lane {
  typedef T Vector __attribute__((vector_size(kVectorBytes)));
  template <Index Bytes>
  static void Pieces(char* to, const char* from, Index bytes, Index offset) {
    if constexpr (Bytes >= static_cast<Index>(sizeof(T))) {
      if (bytes - offset >= Bytes) {
        std::memcpy(to + offset, from + offset, Bytes);
        offset += Bytes;
      }
      Pieces<Bytes / 2>(to, from, bytes, offset);
    }
  }
  static Vector Load(const T* p, Index width) {
    Vector v;
    if (width == Lanes<T>()) { std::memcpy(&v, p, sizeof(v)); return v; }
    v = Vector{};
    Pieces<kVectorBytes / 2>(reinterpret_cast<char*>(&v), reinterpret_cast<const char*>(p),
                             width * static_cast<Index>(sizeof(T)), 0);
    return v;
  }
  static void Store(T* p, Vector v, Index width) {
    if (width == Lanes<T>()) { std::memcpy(p, &v, sizeof(v)); return; }
    Pieces<kVectorBytes / 2>(reinterpret_cast<char*>(p), reinterpret_cast<const char*>(&v),
                             width * static_cast<Index>(sizeof(T)), 0);
  }
};
#ifdef __AVX512F__
template <>
struct Lane<float> {
  typedef float Vector __attribute__((vector_size(kVectorBytes)));
  static __mmask16 Mask(Index width) { return static_cast<__mmask16>((1u << width) - 1); }
  static Vector Load(const float* p, Index width) {
    return (Vector)_mm512_maskz_loadu_ps(Mask(width), p);
  }
  static void Store(float* p, Vector v, Index width) {
    _mm512_mask_storeu_ps(p, Mask(width), (__m512)v);
  }
};
template <>
struct Lane<double> {
  typedef double Vector __attribute__((vector_size(kVectorBytes)));
  static __mmask8 Mask(Index width) { return static_cast<__mmask8>((1u << width) - 1); }
  static Vector Load(const double* p, Index width) {
    return (Vector)_mm512_maskz_loadu_pd(Mask(width), p);
  }
  static void Store(double* p, Vector v, Index width) {
    _mm512_mask_storeu_pd(p, Mask(width), (__m512d)v);
  }
};
#endif

// One term a @ b of a product: a's rows times the packed matrix b.
template <typename T>
struct Term {
  Strided<T> a;
  const Packed<T>* b;
};

// The register tile's step, shared by the products and the weight
// gradients: acc[r][q] += s[r * s_stride] * v[q * lanes ...] for r < R, q < C,
// the C vectors of v loaded once for the R broadcasts.
template <typename T, int R, int C, typename Vector>
__attribute__((always_inline)) inline void TileUpdate(Vector (&acc)[R][C], const T* s,
                                                      Index s_stride, const T* v) {
  constexpr Index lanes = Lanes<T>();
  Vector column[C];
#pragma GCC unroll 16
  for (int q = 0; q < C; ++q) std::memcpy(&column[q], v + q * lanes, sizeof(Vector));
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const T x = s[r * s_stride];
#pragma GCC unroll 16
    for (int q = 0; q < C; ++q) acc[r][q] += x * column[q];
  }
}

// The products' register tile: rows [i, i + R) by the C vectors of columns
// from c, R * C accumulators held in registers across the whole sum (the
// unroll pragmas keep GCC from spilling the arrays to memory); each step
// of the sum loads C vectors of b's row and broadcasts R elements of a. The
// sum runs over the terms in turn (their b's have the same columns).
template <typename T, int R, int C>
inline void ProductTile(const Term<T>* terms, int count, Strided<T> init, T* out,
                        Index out_stride, Index i, Index c, bool accumulate) {
  typedef T Vector __attribute__((vector_size(kVectorBytes)));
  constexpr Index lanes = Lanes<T>();
  const Index n = terms[0].b->cols;
  Vector acc[R][C];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int q = 0; q < C; ++q) acc[r][q] = Vector{};
  for (int term = 0; term < count; ++term) {
    const Packed<T>& b = *terms[term].b;
    const Strided<T> a = terms[term].a;
    const T* bp = b.data.data() + c;
    const T* ap = a.p + i * a.stride;
    for (Index p = 0; p < b.rows; ++p)
      TileUpdate<T, R, C>(acc, ap + p, a.stride, bp + p * b.stride);
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int q = 0; q < C; ++q) {
      const Index col = c + q * lanes, width = std::min(lanes, n - col);
      T* o = out + (i + r) * out_stride + col;
      Vector v = acc[r][q];
      if (init.p != nullptr) v += Lane<T>::Load(init.p + (i + r) * init.stride + col, width);
      if (accumulate) v += Lane<T>::Load(o, width);
      Lane<T>::Store(o, v, width);
    }
}

// Rows as tall as the registers allow for C vectors of columns.
// 32 registers: 8 rows for up to 3 vectors, 6 for 4, 4 for 5 (at most 24
// accumulators). 16 registers: 8 rows of 1 vector, 6 of 2 (12 accumulators,
// 2 column vectors, a broadcast). Measured on AVX2 (Zen 3, products of the
// LSTM's [m, 40] @ [40, 80]): tiles of 6 x 2 vectors reach 35 GMAC/s a core,
// 4 x 3 only 23 (GCC then reloads the columns from memory for every row) and
// 4 x 2 19. So 16 registers take columns two vectors at a time, except
// that 3 vectors (the RNN's 20 units at AVX2, 8 + 8 + 4) and 5 (40 columns,
// or 20 at SSE) take one 4 x 3 tile (then 2): as 6 x 2 and 8 x 1 tiles, every
// row of the left-hand side was broadcast twice, the second time for a
// vector of 4 or 8 lanes (RNN forward -11% at AVX2 and -14% at SSE, GRU -7%
// at AVX2; op level, demo stack, 2 threads).
template <int C>
constexpr int TileRowsFor() {
  if constexpr (kRegisters >= 32) return C <= 3 ? 8 : C == 4 ? 6 : 4;
  return C == 1 ? 8 : C == 2 ? 6 : 4;
}
// The most column vectors a tile holds: 5 with 32 registers, 3 with 16.
constexpr int kMaxTileVectors = kRegisters >= 32 ? 5 : 3;

// Rows in tiles of R, then 4, 2 and 1 (16 rows of R = 6: 6, 6, 4).
template <typename T, int C>
void ProductColumns(const Term<T>* terms, int count, Strided<T> init, T* out,
                    Index out_stride, Index m, Index c, bool accumulate) {
  constexpr int R = TileRowsFor<C>();
  Index i = 0;
  for (; i + R <= m; i += R)
    ProductTile<T, R, C>(terms, count, init, out, out_stride, i, c, accumulate);
  if constexpr (R > 4)
    for (; i + 4 <= m; i += 4)
      ProductTile<T, 4, C>(terms, count, init, out, out_stride, i, c, accumulate);
  for (; i + 2 <= m; i += 2)
    ProductTile<T, 2, C>(terms, count, init, out, out_stride, i, c, accumulate);
  for (; i < m; ++i) ProductTile<T, 1, C>(terms, count, init, out, out_stride, i, c, accumulate);
}

// How many column vectors the next tile takes when `left` remain: as many as
// the registers allow, without leaving a lone vector for the last tile
// (32 registers: 6 as 4 + 2, 8 as 4 + 4; 16 registers: pairs, and 3 where 3
// or 5 are left).
inline int TakeVectors(Index left) {
  if (kMaxTileVectors >= 5)
    return left >= 5 && left != 6 && left != 8 ? 5 : left >= 4 ? 4 : static_cast<int>(left);
  return left == 3 || left == 5 ? 3 : left >= 2 ? 2 : 1;
}

// out[i, :n] = (out[i, :n] if accumulate) + init[i, :n] + the sum over the
// terms of a[i, :k] @ b[:k, :n], for i < m. `init` may be null; its stride
// may be 0 (a bias row). Only the n columns of `out` are written. The
// columns are cut into groups of vectors as TakeVectors says.
template <typename T>
void ProductSum(const Term<T>* terms, int count, Strided<T> init, T* out, Index out_stride,
                Index m, bool accumulate) {
  constexpr Index lanes = Lanes<T>();
  const Index chunks = (terms[0].b->cols + lanes - 1) / lanes;
  for (Index q = 0; q < chunks;) {
    const int take = TakeVectors(chunks - q);
    const Index c = q * lanes;
    switch (take) {
      case 1: ProductColumns<T, 1>(terms, count, init, out, out_stride, m, c, accumulate); break;
      case 2: ProductColumns<T, 2>(terms, count, init, out, out_stride, m, c, accumulate); break;
      case 3: ProductColumns<T, 3>(terms, count, init, out, out_stride, m, c, accumulate); break;
#if defined(__AVX512F__) || defined(__aarch64__)
      case 4: ProductColumns<T, 4>(terms, count, init, out, out_stride, m, c, accumulate); break;
      default: ProductColumns<T, 5>(terms, count, init, out, out_stride, m, c, accumulate); break;
#else
      default: break;  // TakeVectors never takes more than 3 here
#endif
    }
    q += take;
  }
}

// The same for one term, a @ b.
template <typename T>
void Product(Strided<T> a, const Packed<T>& b, Strided<T> init, T* out,
             Index out_stride, Index m, bool accumulate) {
  const Term<T> term{a, &b};
  ProductSum(&term, 1, init, out, out_stride, m, accumulate);
}

// out[p0 + r, c + q * lanes ...] += sum_i a[i, p0 + r] * b[i, c + q * lanes ...]
// for r < R, q < C: R * C accumulators stay in registers while the rows
// stream by, each row's C vectors of b loaded once for R broadcasts of a. Every
// output element sums its products over i in order (one FMA chain a lane), so
// the tile's shape changes no bits.
template <typename T, int R, int C>
void AddOuterTile(Strided<T> a, Index p0, Strided<T> b, Index c, T* out, Index out_stride,
                  Index m) {
  typedef T Vector __attribute__((vector_size(kVectorBytes)));
  constexpr Index lanes = Lanes<T>();
  Vector acc[R][C];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int q = 0; q < C; ++q) acc[r][q] = Vector{};
  for (Index i = 0; i < m; ++i)
    TileUpdate<T, R, C>(acc, a.p + i * a.stride + p0, 1, b.p + i * b.stride + c);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int q = 0; q < C; ++q) {
      T* o = out + (p0 + r) * out_stride + c + q * lanes;
      Vector v;
      std::memcpy(&v, o, sizeof(v));
      v += acc[r][q];
      std::memcpy(o, &v, sizeof(v));
    }
}

// Rows of a in tiles of R (then 2 and 1) for C vectors of columns from c.
// R = 5 with 2 vectors holds 10 accumulators (16 registers: 10 FMA chains
// cover the FMA latency, 7 loads per 10 FMAs); 32 registers take 3 vectors.
// A one-row a (the bias, a first layer's input) has no broadcast to share:
// there the tile is one row by up to 8 vectors (8 chains).
constexpr int kOuterRows = 5;
constexpr int kOuterVectors = kRegisters >= 32 ? 3 : 2;
constexpr int kOuterWideVectors = 8;

template <typename T, int C>
void AddOuterColumns(Strided<T> a, Index k, Strided<T> b, Index c, T* out, Index out_stride,
                     Index m) {
  Index p = 0;
  for (; p + kOuterRows <= k; p += kOuterRows)
    AddOuterTile<T, kOuterRows, C>(a, p, b, c, out, out_stride, m);
  for (; p + 2 <= k; p += 2) AddOuterTile<T, 2, C>(a, p, b, c, out, out_stride, m);
  for (; p < k; ++p) AddOuterTile<T, 1, C>(a, p, b, c, out, out_stride, m);
}

// out[p, :] += sum_i a[i, p] * b[i, :n] for p < k, i < m: a weight gradient.
// `out` is [k, Padded(n)]; b's rows must be readable a whole vector past n.
template <typename T>
void AddOuter(Strided<T> a, Index k, Strided<T> b, Index n, T* out, Index m) {
  constexpr Index lanes = Lanes<T>();
  const Index stride = Padded<T>(n), chunks = stride / lanes;
  Index q = 0;
  if (k == 1) {
    for (; q + kOuterWideVectors <= chunks; q += kOuterWideVectors)
      AddOuterTile<T, 1, kOuterWideVectors>(a, 0, b, q * lanes, out, stride, m);
    for (; q + 4 <= chunks; q += 4) AddOuterTile<T, 1, 4>(a, 0, b, q * lanes, out, stride, m);
    for (; q + 2 <= chunks; q += 2) AddOuterTile<T, 1, 2>(a, 0, b, q * lanes, out, stride, m);
    for (; q < chunks; ++q) AddOuterTile<T, 1, 1>(a, 0, b, q * lanes, out, stride, m);
    return;
  }
  for (; q + kOuterVectors <= chunks; q += kOuterVectors)
    AddOuterColumns<T, kOuterVectors>(a, k, b, q * lanes, out, stride, m);
  if constexpr (kOuterVectors > 2)
    for (; q + 2 <= chunks; q += 2) AddOuterColumns<T, 2>(a, k, b, q * lanes, out, stride, m);
  for (; q < chunks; ++q) AddOuterColumns<T, 1>(a, k, b, q * lanes, out, stride, m);
}

// Asks for the cache lines of `count` elements from `start`, to be read
// (write = 0) or written (1) soon. A tile's rows of its next step lie far from
// this step's (the other tiles' rows lie between), so the hardware
// prefetchers do not see them coming. The backward pass, which reads the
// forward pass's gates back, asks for them a row at a time while working on
// the current step (in the forward pass, asking made no difference).
template <int write, typename T>
void Prefetch(const T* start, Index count) {
  const char* bytes = reinterpret_cast<const char*>(start);
  const Index size = count * static_cast<Index>(sizeof(T));
  for (Index b = 0; b < size; b += 64) __builtin_prefetch(bytes + b, write);
}

// Non-temporal stores of one native vector of floats (x86: 64, 32 or 16
// bytes, to an address aligned to that size), and the fence that orders
// them; other CPUs store normally (kStreamLanes 0).
#if defined(__AVX512F__)
constexpr Index kStreamLanes = 16;
inline void StreamVector(float* d, const float* s) { _mm512_stream_ps(d, _mm512_loadu_ps(s)); }
inline void StreamZeroVector(float* d) { _mm512_stream_ps(d, _mm512_setzero_ps()); }
#elif defined(__AVX__)
constexpr Index kStreamLanes = 8;
inline void StreamVector(float* d, const float* s) { _mm256_stream_ps(d, _mm256_loadu_ps(s)); }
inline void StreamZeroVector(float* d) { _mm256_stream_ps(d, _mm256_setzero_ps()); }
#elif defined(__SSE2__)
constexpr Index kStreamLanes = 4;
inline void StreamVector(float* d, const float* s) { _mm_stream_ps(d, _mm_loadu_ps(s)); }
inline void StreamZeroVector(float* d) { _mm_stream_ps(d, _mm_setzero_ps()); }
#else
constexpr Index kStreamLanes = 0;
inline void StreamVector(float*, const float*) {}
inline void StreamZeroVector(float*) {}
#endif
inline void StreamFence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}
constexpr std::uintptr_t kStreamAlign = kStreamLanes * sizeof(float);

// dst[:count] = src[:count] for a tensor that is not read again soon (the
// forward pass's gates, read back only by the backward pass, after the other
// layers have run): non-temporal stores of whole aligned vectors, so the
// cache lines are written without first being read from memory and without
// pushing the state out of the cache. ForwardTile fences them.
template <typename T>
void StreamCopy(T* dst, const T* src, Index count) {
  Index done = 0;
  if constexpr (std::is_same<T, float>::value && kStreamLanes > 0) {
    for (; done < count && reinterpret_cast<std::uintptr_t>(dst + done) % kStreamAlign != 0;
         ++done)
      dst[done] = src[done];
    for (; done + kStreamLanes <= count; done += kStreamLanes)
      StreamVector(dst + done, src + done);
  }
  std::copy(src + done, src + count, dst + done);
}

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

// Whether p[0 .. n) are all zero (-0 counts as zero; NaN does not): the
// bits but the sign's, OR-ed together (a loop GCC vectorises at any width),
// with one early exit per chunk.
template <typename T>
bool AllZero(const T* p, Index n) {
  using Bits = typename std::conditional<sizeof(T) == 4, std::uint32_t, std::uint64_t>::type;
  constexpr Bits kMagnitude = ~Bits(0) >> 1;
  constexpr Index kChunk = 256;
  for (Index i = 0; i < n; i += kChunk) {
    Bits any = 0;
    for (Index j = i, end = std::min(n, i + kChunk); j < end; ++j) {
      Bits bits;
      std::memcpy(&bits, p + j, sizeof(bits));
      any |= bits & kMagnitude;
    }
    if (any != 0) return false;
  }
  return true;
}

// dst[:count] = 0 with non-temporal stores where they fit (see StreamCopy):
// the dL/dx of steps no gradient reached, not read again soon.
template <typename T>
void StreamZeros(T* dst, Index count) {
  Index done = 0;
  if constexpr (std::is_same<T, float>::value && kStreamLanes > 0) {
    for (; done < count && reinterpret_cast<std::uintptr_t>(dst + done) % kStreamAlign != 0;
         ++done)
      dst[done] = T(0);
    for (; done + kStreamLanes <= count; done += kStreamLanes) StreamZeroVector(dst + done);
  }
  std::fill(dst + done, dst + count, T(0));
}

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
      T* __restrict__ kept = kept_c.get();
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
          kept[s] = carry[s];
          carry[s] = d_c * f;
        }
      // A masked step passes dL/dc through: restore the old carry there.
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
      for (Index k = 0; k < units; ++k) {
        const Index s = i * units + k;
        ch[s] = bk[i * back_width + k];
        if (p.cell == Cell::kGru)  // h' = u h + ..., and r h feeds the candidate
          ch[s] += g[s] * ru[i * 2 * units + units + k] + d_reset.get()[s] * ru[i * 2 * units + k];
      }
      for (Index k = 0; k < p.depth; ++k) dx[i * p.depth + k] = bk[i * back_width + units + k];
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

// How the rows are cut: tiles of `tile_rows`, grouped into `parts`
// contiguous ranges (a part's tiles run in order on one thread, with their
// own weight-gradient sums).
struct Split {
  Index tile_rows, tiles, parts;
};

Split SplitRows(OpKernelContext* context, Index rows) {
  const Index threads = context->device()->tensorflow_cpu_worker_threads()->num_threads;
  const Index wanted = std::max<Index>(1, kTilesPerThread * threads);
  Index tile_rows = (rows + wanted - 1) / wanted;
  tile_rows = std::min(kTileRows, std::max(kMinTileRows, (tile_rows + 7) / 8 * 8));
  const Index tiles = (rows + tile_rows - 1) / tile_rows;
  return {tile_rows, tiles, std::max<Index>(1, std::min(tiles, wanted))};
}

// Runs `work(part, first_row, rows)` for every tile on the CPU thread pool;
// `cost_per_row` is a rough count of flops for the sharder.
template <typename Work>
void RunParts(OpKernelContext* context, Index rows, const Split& split, Index cost_per_row,
              Work work) {
  auto* workers = context->device()->tensorflow_cpu_worker_threads()->workers;
  tensorflow::Shard(workers->NumThreads(), workers, split.parts,
                    cost_per_row * rows / split.parts, [&](int64_t begin, int64_t end) {
                      for (Index part = begin; part < end; ++part)
                        for (Index tile = split.tiles * part / split.parts;
                             tile < split.tiles * (part + 1) / split.parts; ++tile) {
                          const Index first = tile * split.tile_rows;
                          work(part, first, std::min(split.tile_rows, rows - first));
                        }
                    });
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
  explicit ForwardOp(OpKernelConstruction* context) : OpKernel(context), Attributes(context) {}

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
    RunParts(context, p.rows, SplitRows(context, p.rows),
             p.steps * p.width() * (p.depth + p.units + 10),
             [&](Index, Index first, Index m) {
               ForwardTile(p, first, m, hidden_data, cells_data, gates_data, finite_data);
             });
  }
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
    const Tensor& grad_hidden = context->input(10);
    const TensorShape states_shape({p.time, p.batch, p.units});
    OP_REQUIRES(context,
                hidden.shape() == states_shape && grad_hidden.shape() == states_shape &&
                    finite.NumElements() == p.rows &&
                    (cell_ != Cell::kLstm || cells.shape() == states_shape) &&
                    (cell_ == Cell::kRnn ||
                     gates.shape() == TensorShape({p.time, p.batch, p.width()})),
                absl::InvalidArgumentError(
                    "hidden, cells, gates, finite must be the forward op's outputs"));
    Tensor* outputs[5];
    const TensorShape shapes[5] = {
        context->input(0).shape(), context->input(1).shape(), context->input(2).shape(),
        context->input(3).shape(),
        cell_ == Cell::kGru ? context->input(4).shape() : TensorShape({0, 0})};
    for (int k = 0; k < 5; ++k)
      OP_REQUIRES_OK(context, context->allocate_output(k, shapes[k], &outputs[k]));

    const Split split = SplitRows(context, p.rows);
    std::vector<Gradients<T>> grads(split.parts, Gradients<T>(p));
    const T* hidden_data = hidden.flat<T>().data();
    const T* cells_data = cell_ == Cell::kLstm ? cells.flat<T>().data() : nullptr;
    const T* gates_data = cell_ == Cell::kRnn ? nullptr : gates.flat<T>().data();
    const T* grad_data = grad_hidden.flat<T>().data();
    T* grad_inputs = outputs[0]->flat<T>().data();
    RunParts(context, p.rows, split, p.steps * p.width() * (3 * (p.depth + p.units) + 20),
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
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      auto inputs = c->input(0);
      auto kernel = c->input(3);
      auto input_kernel = c->input(1);
      if (!c->RankKnown(inputs) || !c->RankKnown(kernel) || !c->RankKnown(input_kernel)) {
        for (int k = 0; k < 4; ++k) c->set_output(k, c->UnknownShape());
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
