// The IndRNN kernels' (indrnn_ops.cc) activations, their derivatives, and the
// switch that makes the activation a compile-time constant of the loops.
// Included by indrnn_ops.cc only (one translation unit), so the anonymous
// namespace is that file's.
#ifndef IND_RNN_NATIVE_INDRNN_ACTIVATIONS_H_
#define IND_RNN_NATIVE_INDRNN_ACTIVATIONS_H_

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

namespace {

using int64 = std::int64_t;  // tensorflow::int64

enum class Activation { kRelu, kTanh, kSigmoid, kLinear };

Activation ParseActivation(const std::string& name) {
  if (name == "tanh") return Activation::kTanh;
  if (name == "sigmoid") return Activation::kSigmoid;
  if (name == "linear") return Activation::kLinear;
  return Activation::kRelu;
}

// ReLU is written as std::max(x, 0) is, `x < 0 ? 0 : x`, which is what
// TensorFlow's Relu computes (Eigen's max): a NaN passes through (as it
// does in the XLA and TF loops and in keras.layers.RNN), and -0 stays -0.
// `x > 0 ? x : 0` would turn a NaN into 0 and hide it. Both vectorise to
// the same two instructions, a compare and a mask (AVX2: vcmpltps + vandnps
// here, vcmpltps + vandps before).
template <typename T>
inline T Apply(Activation activation, T x) {
  switch (activation) {
    case Activation::kRelu: return x < T(0) ? T(0) : x;
    case Activation::kTanh: return std::tanh(x);
    case Activation::kSigmoid: return T(1) / (T(1) + std::exp(-x));
    default: return x;
  }
}

// act'(pre) written with act's output y, as TensorFlow's own gradients do.
// The caller multiplies it with the incoming gradient, as TF's ReluGrad
// (g * (y > 0)) and the reference do: an inf or NaN gradient meeting a
// zero derivative gives NaN, as 0 * inf does there.
template <typename T>
inline T DerivativeFromOutput(Activation activation, T y) {
  switch (activation) {
    case Activation::kRelu: return y > T(0) ? T(1) : T(0);
    case Activation::kTanh: return T(1) - y * y;
    case Activation::kSigmoid: return y * (T(1) - y);
    default: return T(1);
  }
}

// Calls `run(std::integral_constant<Activation, A>())`: the activation
// becomes a compile-time constant inside `run` (C++17 has no templated lambdas).
template <Activation A>
using ActivationTag = std::integral_constant<Activation, A>;

template <typename Run>
void WithActivation(Activation activation, Run&& run) {
  switch (activation) {
    case Activation::kRelu: run(ActivationTag<Activation::kRelu>()); break;
    case Activation::kTanh: run(ActivationTag<Activation::kTanh>()); break;
    case Activation::kSigmoid: run(ActivationTag<Activation::kSigmoid>()); break;
    default: run(ActivationTag<Activation::kLinear>());
  }
}

}  // namespace

#endif  // IND_RNN_NATIVE_INDRNN_ACTIVATIONS_H_
