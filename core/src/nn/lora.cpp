#include "esft/nn/lora.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "esft/error.h"

namespace esft::nn {

double LoraSpec::scaling() const {
  return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

LoraPair::LoraPair(int64_t experts, int64_t out, int64_t in, const LoraSpec& spec, const at::TensorOptions& options)
    : experts_(experts), spec_(spec) {
  if (spec.rank < 1) throw Error("LoRA rank " + std::to_string(spec.rank) + " must be at least 1");
  if (spec.dropout < 0 || spec.dropout >= 1) throw Error("LoRA dropout must be in [0, 1)");
  a_ = register_module("lora_A", std::make_shared<Weight>());
  b_ = register_module("lora_B", std::make_shared<Weight>());
  const int64_t r = spec.rank * experts;
  // PEFT's start: A ~ kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)); B = 0.
  at::NoGradGuard no_grad;
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  a_->weight = a_->register_parameter("weight", at::empty({r, in}, options).uniform_(-bound, bound));
  b_->weight = b_->register_parameter("weight", at::zeros({out, r}, options));
}

at::Tensor LoraPair::delta() const {
  const auto& A = a_->weight;
  const auto& B = b_->weight;
  if (experts_ == 1) return at::mm(B, A) * spec_.scaling();
  const int64_t E = experts_, r = spec_.rank;
  const auto a = A.view({E, r, A.size(1)});                   // [E, r, in]
  const auto b = B.view({B.size(0), r, E}).permute({2, 0, 1});  // [E, out, r]
  return at::bmm(b, a) * spec_.scaling();
}

at::Tensor LoraPair::forward(const at::Tensor& x) const {
  if (experts_ != 1) throw Error("an expert bank's LoRA applies to its weights, not to an input");
  auto h = spec_.dropout > 0 ? at::dropout(x, spec_.dropout, is_training()) : x;
  return at::linear(at::linear(h, a_->weight), b_->weight) * spec_.scaling();
}

LoraPair& attach_lora_pair(torch::nn::Module& owner, const std::string& name, std::shared_ptr<LoraPair>& slot,
                           int64_t experts, int64_t out, int64_t in, const LoraSpec& spec,
                           const at::TensorOptions& options) {
  if (slot) throw Error("a LoRA pair is attached already");
  slot = owner.register_module(name, std::make_shared<LoraPair>(experts, out, in, spec, options));
  return *slot;
}

void fold_lora_pair(torch::nn::Module& owner, const std::string& name, std::shared_ptr<LoraPair>& slot,
                    const at::Tensor& weight) {
  if (!slot) return;
  {
    at::NoGradGuard no_grad;
    weight.add_(slot->delta().to(weight.scalar_type()));
  }
  owner.unregister_module(name);
  slot.reset();
}

}  // namespace esft::nn
