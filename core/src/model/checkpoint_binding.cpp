#include "esft/model/checkpoint_binding.h"

#include <ATen/ATen.h>

#include "esft/error.h"
#include "esft/io/safetensors.h"

namespace esft {

CheckpointBinding::CheckpointBinding(std::string key, at::Tensor tensor,
                                     std::function<at::Tensor(const at::Tensor&)> select, std::vector<int64_t> shape)
    : key_(std::move(key)), parts_{BoundPart{std::move(tensor), std::move(select), std::move(shape)}} {}

CheckpointBinding CheckpointBinding::stacked(std::string key, std::vector<BoundPart> parts) {
  if (parts.empty()) throw Error("stacked binding '" + key + "' has no parts");
  auto shape_of = [](const BoundPart& p) { return p.shape.empty() ? p.view_of(p.tensor).sizes().vec() : p.shape; };
  for (const auto& p : parts) {
    if (shape_of(p) != shape_of(parts.front())) throw Error("stacked binding '" + key + "' has parts of different shapes");
  }
  CheckpointBinding b;
  b.key_ = std::move(key);
  b.parts_ = std::move(parts);
  b.stacked_ = true;
  return b;
}

at::Tensor CheckpointBinding::part_value(const BoundPart& p, const at::Tensor& t) {
  auto v = p.view_of(t);
  return p.shape.empty() ? v : v.reshape(p.shape);
}

std::vector<int64_t> CheckpointBinding::shape() const {
  const auto& p = parts_.front();
  auto one = p.shape.empty() ? p.view_of(p.tensor).sizes().vec() : p.shape;
  if (stacked_) one.insert(one.begin(), static_cast<int64_t>(parts_.size()));
  return one;
}

int64_t CheckpointBinding::numel() const {
  int64_t n = 1;
  for (auto d : shape()) n *= d;
  return n;
}

at::Tensor CheckpointBinding::value() const {
  if (!stacked_) return part_value(parts_.front(), parts_.front().tensor);
  std::vector<at::Tensor> slices;
  for (const auto& p : parts_) slices.push_back(part_value(p, p.tensor));
  return at::stack(slices);
}

at::Tensor CheckpointBinding::grad() const {
  if (!stacked_) {
    const auto& p = parts_.front();
    const auto& g = p.tensor.grad();
    return g.defined() ? part_value(p, g) : g;
  }
  bool any = false;
  std::vector<at::Tensor> slices;
  for (const auto& p : parts_) {
    const auto& g = p.tensor.grad();
    any = any || g.defined();
    slices.push_back(g.defined() ? part_value(p, g) : at::Tensor());
  }
  if (!any) return at::Tensor();
  auto one = shape();
  one.erase(one.begin());
  for (size_t i = 0; i < slices.size(); ++i) {
    if (!slices[i].defined()) slices[i] = at::zeros(one, parts_[i].tensor.options());
  }
  return at::stack(slices);
}


void CheckpointBinding::assign(const at::Tensor& source) const {
  if (source.sizes() != at::IntArrayRef(shape())) {
    throw Error("tensor '" + key_ + "' has shape " + shape_text(source.sizes()) + " but the model expects " +
                shape_text(shape()));
  }
  for (size_t i = 0; i < parts_.size(); ++i) assign_part(i, stacked_ ? source[static_cast<int64_t>(i)] : source);
}

void CheckpointBinding::assign_part(size_t i, const at::Tensor& source) const {
  const auto& p = parts_.at(i);
  auto target = p.view_of(p.tensor);
  const auto want = p.shape.empty() ? target.sizes().vec() : p.shape;
  if (source.sizes() != at::IntArrayRef(want)) {
    throw Error("tensor '" + key_ + "' part " + std::to_string(i) + " has shape " + shape_text(source.sizes()) +
                " but the model expects " + shape_text(want));
  }
  at::NoGradGuard no_grad;
  // reshape of a contiguous source is a view, so this stays one copy from the mapped file into the model.
  target.copy_(source.reshape(target.sizes()));
}

}  // namespace esft
