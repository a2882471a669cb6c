#include "esft/nn/kv_cache.h"

#include <ATen/ATen.h>

namespace esft::nn {

std::pair<at::Tensor, at::Tensor> KVCache::append(int64_t layer, const at::Tensor& k, const at::Tensor& v) {
  auto& keys = keys_.at(layer);
  auto& values = values_.at(layer);
  keys = keys.defined() ? at::cat({keys, k}, 2) : k;
  values = values.defined() ? at::cat({values, v}, 2) : v;
  return {keys, values};
}

}  // namespace esft::nn
