#pragma once
// The router of a MoE layer (`mlp.gate`, or `mlp.router` in gpt-oss): scores tokens against experts and picks the
// top k. One module, three scoring rules; the exact math of each is in shared/spec/MODELS.md.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <memory>

#include "esft/nn/lora.h"

namespace esft::nn {

enum class RouterScoring {
  // p = softmax(logits) over all experts; top-k of p; optional renormalisation (qwen2_moe, qwen3_moe, olmoe).
  SoftmaxThenTopK,
  // top-k of the raw logits (router bias included), softmax over the k chosen (gpt-oss).
  TopKThenSoftmax,
  // s = sigmoid(logits) in float32; experts chosen on s + e_score_correction_bias within the best `topk_group` of
  // `n_group` groups (group score = sum of its top-2); weights are the unbiased s of the chosen, optionally
  // renormalised (sum + 1e-20) (glm4_moe, DeepSeek-V3's "noaux_tc").
  SigmoidGroupLimited,
  // DeepSeek-V2: p = softmax(logits) with logits and softmax in float32; top-k of p within the best `topk_group` of
  // `n_group` groups (group score = its largest p; other groups' experts score 0), so n_group 1 is `topk_method`
  // "greedy" and more groups are "group_limited_greedy". Weights are the chosen p times routed_scaling_factor, or,
  // with norm_topk_prob and k > 1, the chosen p renormalised (sum + 1e-20) and not scaled, as DeepSeek's own code
  // does (transformers 5.17 ignores norm_topk_prob here; every released DeepSeek-V2 sets it false).
  SoftmaxGroupLimited,
};

struct RouterSpec {
  int64_t num_experts = 0;
  int64_t top_k = 0;
  RouterScoring scoring = RouterScoring::SoftmaxThenTopK;
  bool norm_topk_prob = false;
  bool bias = false;             // a learned bias on the logits (`bias`, gpt-oss)
  int64_t n_group = 1;           // the group-limited scorings only
  int64_t topk_group = 1;        // the group-limited scorings only
  double routed_scaling_factor = 1.0;  // multiplies the final weights
};

struct Routing {
  at::Tensor logits;   // [N, E] raw scores (float32 for SigmoidGroupLimited, else the input dtype)
  at::Tensor idx;      // [N, k] int64
  at::Tensor weight;   // [N, k] in the logits' dtype, as applied to expert outputs (0 where dropped)
  at::Tensor probs;    // [N, E] float32 probabilities the choice was made from, where the router kind has them
  at::Tensor dropped;  // [N, k] bool: the expert had no capacity left for the token; undefined = nothing dropped
};

// What a MoE layer needs of its router, whatever its kind: this scoring-rule router (the Hugging Face families) or
// the Switch router with capacity and jitter (switch_router.h).
class RouterBase : public torch::nn::Module {
 public:
  // x [N, H]; token_mask [N] bool or undefined (every token real).
  virtual Routing route(const at::Tensor& x, const at::Tensor& token_mask) const = 0;
  virtual int64_t num_experts() const = 0;
  virtual int64_t top_k() const = 0;
};

class Router : public RouterBase {
 public:
  // Throws esft::Error for an inconsistent spec (top_k outside [1, E], groups that do not divide E, ...).
  Router(const RouterSpec& spec, int64_t hidden, const at::TensorOptions& options);
  Routing forward(const at::Tensor& x) const;  // x [N, H]
  Routing route(const at::Tensor& x, const at::Tensor& /*token_mask*/) const override { return forward(x); }
  int64_t num_experts() const override { return spec_.num_experts; }
  int64_t top_k() const override { return spec_.top_k; }
  const RouterSpec& spec() const { return spec_; }

  // Attaches a LoRA pair on the weight (module `lora`; no dropout); throws esft::Error when one is attached.
  LoraPair& add_lora(const LoraSpec& spec);
  // Adds the pair's delta into the weight and removes the pair.
  void fold_lora();

  at::Tensor weight;                   // [E, H]
  std::shared_ptr<LoraPair> lora;      // null unless attached
  at::Tensor bias;                     // [E] with spec.bias, else undefined
  at::Tensor e_score_correction_bias;  // [E] float32 buffer for SigmoidGroupLimited (used only to choose)

 private:
  // The top k of `scores` [N, E] among the experts of the best topk_group groups; `group_score` maps the scores
  // viewed as [N, G, E/G] to [N, G].
  at::Tensor choose_in_groups(const at::Tensor& scores, at::Tensor (*group_score)(const at::Tensor&)) const;
  RouterSpec spec_;
};

}  // namespace esft::nn
