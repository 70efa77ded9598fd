// The register-tiled products of the DilatedRNN kernels (drnn_ops.cc): a sum of
// terms a @ b over packed right-hand sides (the gates' products, dL/dh and
// dL/dx), and the outer-product sums of the weight gradients, with tiles sized
// to the target's register file (drnn_vectors.h).
#ifndef DILATED_RNN_NATIVE_DRNN_PRODUCTS_H_
#define DILATED_RNN_NATIVE_DRNN_PRODUCTS_H_

#include <vector>

#include "drnn_vectors.h"

namespace {

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

// One term a @ b of a product: a's rows times the packed matrix b.
template <typename T>
struct Term {
  Strided<T> a;
  const Packed<T>* b;
};

// Accumulator slots for F full vectors (at least one, so that F = 0 stays a
// valid array bound; the unused slot is never read).
template <int F>
constexpr int Slots() { return F > 0 ? F : 1; }

// The register tile's step, shared by the products and the weight
// gradients: acc[r][q] += s[r * s_stride] * v[q * lanes ...] for r < R and
// the F full vectors q < F, and tail[r] += the same times the last vector
// (TailBytes wide: the native width, or narrower where the tile's last
// columns are a partial vector; see TailBytesFor). The vectors of v are
// loaded once for the R broadcasts.
template <typename T, int R, int F, typename Vector, typename Tail>
__attribute__((always_inline)) inline void TileUpdate(Vector (&acc)[R][Slots<F>()],
                                                      Tail (&tail)[R], const T* s,
                                                      Index s_stride, const T* v) {
  constexpr Index lanes = Lanes<T>();
  Vector column[Slots<F>()];
  Tail last;
#pragma GCC unroll 16
  for (int q = 0; q < F; ++q) std::memcpy(&column[q], v + q * lanes, sizeof(Vector));
  std::memcpy(&last, v + F * lanes, sizeof(Tail));
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const T x = s[r * s_stride];
#pragma GCC unroll 16
    for (int q = 0; q < F; ++q) acc[r][q] += x * column[q];
    tail[r] += x * last;
  }
}

// How many bytes a tile's last column vector takes for the `width` lanes
// left in it: the narrowest of 16, 32 and 64 bytes, up to the native width,
// that holds them. Where the vector units are half the native width, a
// native operation takes a unit twice: on Zen 4 (512-bit AVX-512 on 256-bit
// pipes) a row of 20 floats (16 + 4) cost 4 pipe cycles per multiply-add in
// two 512-bit vectors and costs 3 with a 16-byte tail; on Zen 1 (256-bit AVX2
// on 128-bit pipes) 8 + 8 + 4 cost 6 and costs 5. Where the units are as wide
// as the vectors the narrower tail costs the same. Every lane sums the same
// products in the same order, so the bits do not change where the compiler
// fuses the multiply-adds alike at both widths (x86-64-v2, v3, v4 builds). In
// a native build for a Zen CPU, g++'s tuning (`avoid-fma-max-bits`: 128 for
// znver1) computes a loop's chain of 128-bit multiply-adds as a multiply and
// an add, which moves a 16-byte tail's sums by a rounding there.
template <typename T>
Index TailBytesFor(Index width) {
  const Index bytes = width * static_cast<Index>(sizeof(T));
  if (kVectorBytes < 32) return kVectorBytes;
  return bytes <= 16 ? 16 : bytes <= 32 ? 32 : kVectorBytes;
}

// The products' register tile: rows [i, i + R) by the C vectors of columns
// from c (the last one TailBytes wide), R * C accumulators held in registers
// across the whole sum (the unroll pragmas keep GCC from spilling the arrays
// to memory); each step of the sum loads C vectors of b's row and broadcasts
// R elements of a. The sum runs over the terms in turn (their b's have the
// same columns).
template <typename T, int R, int C, Index TailBytes>
inline void ProductTile(const Term<T>* terms, int count, Strided<T> init, T* out,
                        Index out_stride, Index i, Index c, bool accumulate) {
  typedef T Vector __attribute__((vector_size(kVectorBytes)));
  typedef T Tail __attribute__((vector_size(TailBytes)));
  constexpr Index lanes = Lanes<T>(), tail_lanes = TailBytes / sizeof(T);
  constexpr int F = C - 1;  // full vectors before the tail
  const Index n = terms[0].b->cols;
  Vector acc[R][Slots<F>()];
  Tail tail[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int q = 0; q < Slots<F>(); ++q) acc[r][q] = Vector{};
    tail[r] = Tail{};
  }
  for (int term = 0; term < count; ++term) {
    const Packed<T>& b = *terms[term].b;
    const Strided<T> a = terms[term].a;
    const T* bp = b.data.data() + c;
    const T* ap = a.p + i * a.stride;
    for (Index p = 0; p < b.rows; ++p)
      TileUpdate<T, R, F>(acc, tail, ap + p, a.stride, bp + p * b.stride);
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    T* o = out + (i + r) * out_stride;
    const T* init_row = init.p + (i + r) * init.stride;
#pragma GCC unroll 16
    for (int q = 0; q < F; ++q) {
      const Index col = c + q * lanes, width = std::min(lanes, n - col);
      Vector v = acc[r][q];
      if (init.p != nullptr) v += Lane<T>::Load(init_row + col, width);
      if (accumulate) v += Lane<T>::Load(o + col, width);
      Lane<T>::Store(o + col, v, width);
    }
    const Index col = c + F * lanes, width = std::min(tail_lanes, n - col);
    Tail v = tail[r];
    if (init.p != nullptr) v += Lane<T, TailBytes>::Load(init_row + col, width);
    if (accumulate) v += Lane<T, TailBytes>::Load(o + col, width);
    Lane<T, TailBytes>::Store(o + col, v, width);
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
template <typename T, int C, Index TailBytes>
void ProductRows(const Term<T>* terms, int count, Strided<T> init, T* out, Index out_stride,
                 Index m, Index c, bool accumulate) {
  constexpr int R = TileRowsFor<C>();
  Index i = 0;
  for (; i + R <= m; i += R)
    ProductTile<T, R, C, TailBytes>(terms, count, init, out, out_stride, i, c, accumulate);
  if constexpr (R > 4)
    for (; i + 4 <= m; i += 4)
      ProductTile<T, 4, C, TailBytes>(terms, count, init, out, out_stride, i, c, accumulate);
  for (; i + 2 <= m; i += 2)
    ProductTile<T, 2, C, TailBytes>(terms, count, init, out, out_stride, i, c, accumulate);
  for (; i < m; ++i)
    ProductTile<T, 1, C, TailBytes>(terms, count, init, out, out_stride, i, c, accumulate);
}

// The same with the last vector `tail_bytes` wide (TailBytesFor).
template <typename T, int C>
void ProductColumns(const Term<T>* terms, int count, Strided<T> init, T* out,
                    Index out_stride, Index m, Index c, bool accumulate, Index tail_bytes) {
  if constexpr (kVectorBytes >= 32)
    if (tail_bytes == 16)
      return ProductRows<T, C, 16>(terms, count, init, out, out_stride, m, c, accumulate);
  if constexpr (kVectorBytes == 64)
    if (tail_bytes == 32)
      return ProductRows<T, C, 32>(terms, count, init, out, out_stride, m, c, accumulate);
  ProductRows<T, C, kVectorBytes>(terms, count, init, out, out_stride, m, c, accumulate);
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
  const Index n = terms[0].b->cols, chunks = (n + lanes - 1) / lanes;
  for (Index q = 0; q < chunks;) {
    const int take = TakeVectors(chunks - q);
    const Index c = q * lanes;
    // The group's last vector: a partial one only in the last group.
    const Index tail = q + take == chunks ? TailBytesFor<T>(n - (chunks - 1) * lanes)
                                          : kVectorBytes;
    switch (take) {
      case 1: ProductColumns<T, 1>(terms, count, init, out, out_stride, m, c, accumulate, tail);
        break;
      case 2: ProductColumns<T, 2>(terms, count, init, out, out_stride, m, c, accumulate, tail);
        break;
      case 3: ProductColumns<T, 3>(terms, count, init, out, out_stride, m, c, accumulate, tail);
        break;
#if defined(__AVX512F__) || defined(__aarch64__)
      case 4: ProductColumns<T, 4>(terms, count, init, out, out_stride, m, c, accumulate, tail);
        break;
      default:
        ProductColumns<T, 5>(terms, count, init, out, out_stride, m, c, accumulate, tail);
        break;
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
// for r < R, q < C (the last vector TailBytes wide): R * C accumulators stay
// in registers while the rows stream by, each row's C vectors of b loaded
// once for R broadcasts of a. Every output element sums its products over i
// in order (one FMA chain a lane), so the tile's shape changes no bits.
template <typename T, int R, int C, Index TailBytes>
void AddOuterTile(Strided<T> a, Index p0, Strided<T> b, Index c, T* out, Index out_stride,
                  Index m) {
  typedef T Vector __attribute__((vector_size(kVectorBytes)));
  typedef T Tail __attribute__((vector_size(TailBytes)));
  constexpr Index lanes = Lanes<T>();
  constexpr int F = C - 1;  // full vectors before the tail
  Vector acc[R][Slots<F>()];
  Tail tail[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int q = 0; q < Slots<F>(); ++q) acc[r][q] = Vector{};
    tail[r] = Tail{};
  }
  for (Index i = 0; i < m; ++i)
    TileUpdate<T, R, F>(acc, tail, a.p + i * a.stride + p0, 1, b.p + i * b.stride + c);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    T* o = out + (p0 + r) * out_stride + c;
#pragma GCC unroll 16
    for (int q = 0; q < F; ++q) {
      Vector v;
      std::memcpy(&v, o + q * lanes, sizeof(v));
      v += acc[r][q];
      std::memcpy(o + q * lanes, &v, sizeof(v));
    }
    Tail v;
    std::memcpy(&v, o + F * lanes, sizeof(v));
    v += tail[r];
    std::memcpy(o + F * lanes, &v, sizeof(v));
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

template <typename T, int C, Index TailBytes>
void AddOuterRows(Strided<T> a, Index k, Strided<T> b, Index c, T* out, Index out_stride,
                  Index m) {
  if (k == 1) return AddOuterTile<T, 1, C, TailBytes>(a, 0, b, c, out, out_stride, m);
  if constexpr (C <= kOuterVectors) {
    Index p = 0;
    for (; p + kOuterRows <= k; p += kOuterRows)
      AddOuterTile<T, kOuterRows, C, TailBytes>(a, p, b, c, out, out_stride, m);
    for (; p + 2 <= k; p += 2) AddOuterTile<T, 2, C, TailBytes>(a, p, b, c, out, out_stride, m);
    for (; p < k; ++p) AddOuterTile<T, 1, C, TailBytes>(a, p, b, c, out, out_stride, m);
  }
}

// The same with the last vector `tail_bytes` wide (TailBytesFor).
template <typename T, int C>
void AddOuterColumns(Strided<T> a, Index k, Strided<T> b, Index c, T* out, Index out_stride,
                     Index m, Index tail_bytes) {
  if constexpr (kVectorBytes >= 32)
    if (tail_bytes == 16) return AddOuterRows<T, C, 16>(a, k, b, c, out, out_stride, m);
  if constexpr (kVectorBytes == 64)
    if (tail_bytes == 32) return AddOuterRows<T, C, 32>(a, k, b, c, out, out_stride, m);
  AddOuterRows<T, C, kVectorBytes>(a, k, b, c, out, out_stride, m);
}

// out[p, :] += sum_i a[i, p] * b[i, :n] for p < k, i < m: a weight gradient.
// `out` is [k, Padded(n)]; b's rows must be readable a whole vector past n.
// Columns in groups of C vectors (8, 4, 2, 1 for a one-row a; 3 or 2, then
// 1 otherwise); the group holding the last vector takes its tail width.
template <typename T>
void AddOuter(Strided<T> a, Index k, Strided<T> b, Index n, T* out, Index m) {
  constexpr Index lanes = Lanes<T>();
  const Index stride = Padded<T>(n), chunks = stride / lanes;
  const Index last_tail = TailBytesFor<T>(n - (chunks - 1) * lanes);
  Index q = 0;
  const auto tail = [&](int take) { return q + take == chunks ? last_tail : kVectorBytes; };
  if (k == 1) {
    for (; q + kOuterWideVectors <= chunks; q += kOuterWideVectors)
      AddOuterColumns<T, kOuterWideVectors>(a, k, b, q * lanes, out, stride, m,
                                            tail(kOuterWideVectors));
    for (; q + 4 <= chunks; q += 4)
      AddOuterColumns<T, 4>(a, k, b, q * lanes, out, stride, m, tail(4));
  }
  for (; q + kOuterVectors <= chunks; q += kOuterVectors)
    AddOuterColumns<T, kOuterVectors>(a, k, b, q * lanes, out, stride, m, tail(kOuterVectors));
  if constexpr (kOuterVectors > 2)
    for (; q + 2 <= chunks; q += 2)
      AddOuterColumns<T, 2>(a, k, b, q * lanes, out, stride, m, tail(2));
  for (; q < chunks; ++q) AddOuterColumns<T, 1>(a, k, b, q * lanes, out, stride, m, tail(1));
}

}  // namespace

#endif  // DILATED_RNN_NATIVE_DRNN_PRODUCTS_H_
