#pragma once
// LoRA (Hu et al. 2021) as PEFT computes it: a frozen weight W [out, in] gains scaling * B A, with A [r, in]
// (Kaiming-uniform at the start) and B [out, r] (zeros at the start, so training starts from the base model), and
// scaling = alpha / r (alpha / sqrt(r) with rsLoRA).
//
// Two ways in, as in PEFT:
//   - on a linear layer (nn::Linear): y = W x + scaling * B A dropout(x), the input path, dropout allowed;
//   - on a parameter (a router's weight, an expert bank's [E, out, in] tensors): the forward reads W + delta,
//     where an expert bank has one pair per expert in PEFT's layout for 3-D parameters: A [r·E, in] holds expert
//     e's A in rows e·r .. e·r+r-1, B [out, r·E] holds expert e's B in columns j·E + e (j < r). No dropout there:
//     x cannot be factored out of W + delta.
// The pair's tensors are `lora_A.weight` and `lora_B.weight` of this module, so a model's named_parameters name
// them under the layer they adapt.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <memory>
#include <string>

namespace esft::nn {

struct LoraSpec {
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0;  // input-path pairs only
  bool rslora = false;
  double scaling() const;
};

class LoraPair : public torch::nn::Module {
 public:
  // One pair for a weight [out, in] (experts = 1, 2-D delta) or one per expert of a bank of `experts` such weights
  // (3-D delta [experts, out, in]). A is drawn from the global generator (seed it for a reproducible start).
  // Throws esft::Error for a rank < 1. (A rank above min(in, out) adds nothing; PEFT allows it, and so does this,
  // for adapters made elsewhere; training refuses it, in attach_lora.)
  LoraPair(int64_t experts, int64_t out, int64_t in, const LoraSpec& spec, const at::TensorOptions& options);

  // scaling * B A: [out, in], or [experts, out, in] for a bank.
  at::Tensor delta() const;
  // scaling * B A dropout(x) for x [..., in] (a single pair only); dropout acts only while the module is training.
  at::Tensor forward(const at::Tensor& x) const;

  int64_t experts() const { return experts_; }
  const LoraSpec& spec() const { return spec_; }
  at::Tensor A() const { return a_->weight; }  // [r·experts, in]
  at::Tensor B() const { return b_->weight; }  // [out, r·experts]

 private:
  struct Weight : torch::nn::Module {
    at::Tensor weight;
  };
  int64_t experts_;
  LoraSpec spec_;
  std::shared_ptr<Weight> a_, b_;
};

// The one way a module takes and gives up a pair (linear layers, routers, expert banks): `attach_lora_pair`
// registers a new pair as `owner`'s module `name` in `slot` (throws esft::Error when the slot holds one);
// `fold_lora_pair` adds the slot's delta into `weight` (in place, outside autograd), removes the module and empties
// the slot (nothing happens for an empty slot).
LoraPair& attach_lora_pair(torch::nn::Module& owner, const std::string& name, std::shared_ptr<LoraPair>& slot,
                           int64_t experts, int64_t out, int64_t in, const LoraSpec& spec,
                           const at::TensorOptions& options);
void fold_lora_pair(torch::nn::Module& owner, const std::string& name, std::shared_ptr<LoraPair>& slot,
                    const at::Tensor& weight);

}  // namespace esft::nn
