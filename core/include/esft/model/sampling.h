#pragma once
// Choosing the next token from logits, as transformers' generate does with do_sample: the repetition penalty
// (CTRL's: a seen token's logit divided by the penalty when positive, multiplied when negative), then temperature,
// top-k and top-p (the smallest set of most likely tokens whose probability reaches top_p, at least one), then a draw
// from the softmax with the request's own generator. Temperature 0 is greedy decoding: argmax, as before.
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace esft {

struct SamplingSettings {
  double temperature = 0;          // 0: greedy
  double top_p = 1;                // (0, 1]
  int64_t top_k = 0;               // 0: all tokens
  double repetition_penalty = 1;   // > 0; 1: none
  uint64_t seed = 0;

  bool greedy() const { return temperature == 0; }
  // Throws esft::Error naming the setting for a value out of range.
  void validate() const;
};

// A CPU generator seeded with `seed`, for one sequence's draws.
at::Generator make_sampling_generator(uint64_t seed);

// logits [V] (any float dtype, any device); `seen`: the sequence's tokens so far (prompt and generated), for the
// repetition penalty. Returns the chosen token id.
int64_t choose_token(const at::Tensor& logits, const SamplingSettings& settings, const std::vector<int64_t>& seen,
                     at::Generator& generator);

}  // namespace esft
