// The DilatedRNN kernels' (drnn_ops.cc) vectors at the target's native width:
// the width and register count each x86-64 level (and aarch64) has, Eigen maps
// over scratch rows, the gates' float sigmoid, partial-vector loads and stores,
// prefetches, non-temporal stores, and a zero test. Everything here is portable
// C++ (GCC/Clang vector extensions, Eigen packets) but the non-temporal stores
// (one intrinsic a level) and AVX-512's masked partial loads and stores.
// Included by drnn_ops.cc only (one translation unit), so the anonymous
// namespace is that file's.
#ifndef DILATED_RNN_NATIVE_DRNN_VECTORS_H_
#define DILATED_RNN_NATIVE_DRNN_VECTORS_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "Eigen/Core"

namespace {

using Index = int64_t;

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
  // Single values (where Eigen's loops peel elements to reach an aligned
  // address, and a run's last elements) go through the same packet code, so
  // that every element gets the same bits whatever its buffer's alignment:
  // a scalar formula (std::exp) gave other last bits, on elements that moved
  // with malloc's alignment from run to run at AVX-512's 64-byte packets.
  float operator()(float x) const {
    using Packet = typename Eigen::internal::packet_traits<float>::type;
    return Eigen::internal::pfirst(packetOp(Eigen::internal::pset1<Packet>(x)));
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


// Before a loop whose iterations are independent, where the compiler cannot
// prove it and would leave the loop scalar.
#if defined(__clang__)
#define INDEPENDENT_ITERATIONS _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define INDEPENDENT_ITERATIONS _Pragma("GCC ivdep")
#else
#define INDEPENDENT_ITERATIONS
#endif

template <typename T>
struct Strided {  // rows of a row-major matrix: element (i, j) at p[i * stride + j]
  const T* p;
  Index stride;
};

// The first `width` lanes of a vector of `Bytes` bytes (the native width, or
// a narrower tile tail): loaded (zero beyond) or stored (memory beyond
// untouched). A partial vector (the last chunk of a row of 20 units is 4 of
// 8 or 16 lanes) moves as at most log2(lanes) pieces of fixed, halving sizes
// (one 16-byte move for 4 of 8 floats), never element by element; AVX-512 has
// masked instructions for its full width.
template <typename T, Index Bytes = kVectorBytes>
struct Lane {
  typedef T Vector __attribute__((vector_size(Bytes)));
  template <Index Piece>
  static void Pieces(char* to, const char* from, Index bytes, Index offset) {
    if constexpr (Piece >= static_cast<Index>(sizeof(T))) {
      if (bytes - offset >= Piece) {
        std::memcpy(to + offset, from + offset, Piece);
        offset += Piece;
      }
      Pieces<Piece / 2>(to, from, bytes, offset);
    }
  }
  static Vector Load(const T* p, Index width) {
    Vector v;
    if (width * static_cast<Index>(sizeof(T)) == Bytes) {
      std::memcpy(&v, p, sizeof(v));
      return v;
    }
    v = Vector{};
    Pieces<Bytes / 2>(reinterpret_cast<char*>(&v), reinterpret_cast<const char*>(p),
                      width * static_cast<Index>(sizeof(T)), 0);
    return v;
  }
  static void Store(T* p, Vector v, Index width) {
    if (width * static_cast<Index>(sizeof(T)) == Bytes) {
      std::memcpy(p, &v, sizeof(v));
      return;
    }
    Pieces<Bytes / 2>(reinterpret_cast<char*>(p), reinterpret_cast<const char*>(&v),
                      width * static_cast<Index>(sizeof(T)), 0);
  }
};
#ifdef __AVX512F__
template <>
struct Lane<float, 64> {
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
struct Lane<double, 64> {
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

// to[:n] = from[:n] as native vectors and one narrower tail (Lane): a row of
// 20 floats is three moves with AVX2. gcc turns a plain copy loop of a row
// (and this one, seen through) into a call of memcpy, whose call and size
// dispatch cost more than the copy at 80 bytes (3% of the LSTM's step with
// every output's gradient): the source address is made opaque to it.
template <typename T>
inline void CopyRow(T* to, const T* from, Index n) {
  constexpr Index lanes = kVectorBytes / static_cast<Index>(sizeof(T));
  Index k = 0;
  for (; k + lanes <= n; k += lanes) {
    const T* source = from + k;
    asm("" : "+r"(source));  // no instruction: only hides the loop's pattern
    Lane<T>::Store(to + k, Lane<T>::Load(source, lanes), lanes);
  }
  if (k < n) Lane<T>::Store(to + k, Lane<T>::Load(from + k, n - k), n - k);
}

// Asks for the cache lines of `count` elements from `start`, to be read
// (write = 0) or written (1) soon. A tile's rows of its next step lie far from
// this step's (the other tiles' rows lie between), so the hardware
// prefetchers do not see them coming. The backward pass, which reads the
// forward pass's gates back, asks for them a row at a time while working on
// the current step (in the forward pass, asking made no difference). The
// lines are asked for into the L2 only (locality 1, `prefetcht2` on x86):
// into the L1 (`prefetcht0`), a step's dozens of requests filled the L1's
// miss buffers and stalled the current step's loads; op-level every-step
// stack on a Zen 4, alternating runs: 2-6% faster at v2, v3 and v4 (GRU at
// v3 0.130 -> 0.123 s), where no prefetch at all was 6% slower.
template <int write, typename T>
void Prefetch(const T* start, Index count) {
  const char* bytes = reinterpret_cast<const char*>(start);
  const Index size = count * static_cast<Index>(sizeof(T));
  for (Index b = 0; b < size; b += 64) __builtin_prefetch(bytes + b, write, 1);
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

}  // namespace

#endif  // DILATED_RNN_NATIVE_DRNN_VECTORS_H_
