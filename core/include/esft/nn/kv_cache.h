#pragma once
// Keys and values of every attention layer for the tokens seen so far, for incremental decoding.
#include <ATen/core/Tensor.h>

#include <utility>
#include <vector>

namespace esft::nn {

class KVCache {
 public:
  explicit KVCache(int64_t num_layers) : keys_(num_layers), values_(num_layers) {}
  // Tokens already cached (positions of the next tokens start here).
  int64_t length() const { return keys_.empty() || !keys_[0].defined() ? 0 : keys_[0].size(2); }
  // k, v [B, kv_heads, T, head_dim]; returns the whole cached (k, v) of this layer including the new tokens.
  std::pair<at::Tensor, at::Tensor> append(int64_t layer, const at::Tensor& k, const at::Tensor& v);

 private:
  std::vector<at::Tensor> keys_;
  std::vector<at::Tensor> values_;
};

}  // namespace esft::nn
