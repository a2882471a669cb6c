#pragma once
// Where a checkpoint tensor lives in a model: a parameter or buffer, and the part of it that holds this key.
// Plain parameters are bound whole; fused expert banks bind each per-expert Hub tensor to a slice of a bank. One
// list of bindings serves loading, reading gradients under checkpoint names, and saving adapters and merges.
#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

namespace esft {

struct CheckpointBinding {
  std::string key;
  at::Tensor tensor;                                    // the parameter or buffer
  std::function<at::Tensor(const at::Tensor&)> select;  // its part of `tensor` (or of tensor.grad()); empty = all

  at::Tensor value() const { return select ? select(tensor) : tensor; }
  // Undefined when the tensor has no gradient (frozen, or backward not run).
  at::Tensor grad() const {
    const auto& g = tensor.grad();
    if (!g.defined()) return g;
    return select ? select(g) : g;
  }
};

using CheckpointBindings = std::vector<CheckpointBinding>;

}  // namespace esft
