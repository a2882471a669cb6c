#pragma once
// Where a checkpoint tensor lives in a model. One list of bindings serves loading, reading gradients under
// checkpoint names, and saving adapters and merges.
//
// A binding is one or more parts. Each part is a view of a parameter or buffer (`select(tensor)`, or the whole
// tensor) holding the checkpoint tensor's elements in row-major order; `shape` gives their checkpoint shape when
// the view's differs (gpt-oss' interleaved gate/up columns are a strided [H, I, 2] view of our [2I, H] rows).
// Most bindings have one part. A `stacked` binding is a fused checkpoint tensor whose slices along dim 0 are its
// parts (gpt-oss stores all experts of a layer in one tensor; ESFT freezing puts them in different tensors).
#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

namespace esft {

struct BoundPart {
  at::Tensor tensor;                                    // the parameter or buffer
  std::function<at::Tensor(const at::Tensor&)> select;  // its part of `tensor` (or of tensor.grad()); empty = all
  std::vector<int64_t> shape;                           // checkpoint shape of the part; empty = the view's shape

  at::Tensor view_of(const at::Tensor& t) const { return select ? select(t) : t; }
  bool trainable() const { return tensor.requires_grad(); }
};

class CheckpointBinding {
 public:
  // The whole of `tensor`, or the view `select` makes of it.
  CheckpointBinding(std::string key, at::Tensor tensor, std::function<at::Tensor(const at::Tensor&)> select = {},
                    std::vector<int64_t> shape = {});
  // A fused tensor: parts[i] is slice i along dim 0. All parts have the same checkpoint shape.
  static CheckpointBinding stacked(std::string key, std::vector<BoundPart> parts);

  const std::string& key() const { return key_; }
  const std::vector<BoundPart>& parts() const { return parts_; }
  bool is_stacked() const { return stacked_; }
  std::vector<int64_t> shape() const;  // checkpoint shape
  int64_t numel() const;

  // The tensor in checkpoint layout, to read: a view of the model's tensor for plain bindings, a fresh copy for
  // stacked or reshaped ones (so never write through it; use assign).
  at::Tensor value() const;
  // The gradient in checkpoint layout; undefined when no part has one (frozen, or no backward yet). Parts of a
  // stacked binding without a gradient (frozen experts) read as zeros; walk parts() to skip them instead.
  at::Tensor grad() const;
  // Copies `source` (checkpoint layout, any dtype/device) into the model's tensor. Throws esft::Error naming the
  // key when the source's shape is not shape().
  void assign(const at::Tensor& source) const;
  // Part i in checkpoint layout (slice i of a stacked binding), to read; and its assignment.
  at::Tensor part(size_t i) const { return part_value(parts_.at(i), parts_.at(i).tensor); }
  void assign_part(size_t i, const at::Tensor& source) const;

 private:
  CheckpointBinding() = default;
  static at::Tensor part_value(const BoundPart& p, const at::Tensor& t);
  std::string key_;
  std::vector<BoundPart> parts_;
  bool stacked_ = false;
};

using CheckpointBindings = std::vector<CheckpointBinding>;

}  // namespace esft
