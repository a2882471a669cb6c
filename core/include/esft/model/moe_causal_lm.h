#pragma once
// The model interface the host and the ESFT pipeline program against. Module trees use Hugging Face attribute
// names, so named_parameters() yields checkpoint keys except for the expert banks, which checkpoint_bindings() maps
// to the checkpoint's names (per-expert tensors, or gpt-oss' fused ones).
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <memory>
#include <vector>

#include "esft/model/checkpoint_binding.h"
#include "esft/model/model_config.h"
#include "esft/model/router_event.h"
#include "esft/nn/kv_cache.h"
#include "esft/nn/moe_layer.h"

namespace esft {

enum class LogitsMode { All, Last, None };

struct ForwardOptions {
  LogitsMode logits = LogitsMode::All;
  bool hidden_states = false;  // embedding output, each decoder layer's output, then the final-norm output
  bool final_hidden = false;   // the final-norm output alone (for losses computed from it, with LogitsMode::None)
  bool aux_loss = false;       // load-balancing loss over all MoE layers (padding excluded), coefficient not applied
  nn::KVCache* cache = nullptr;  // incremental decoding: positions start at cache->length()
  // Positions of the input tokens [B, T], or undefined: past .. past + T - 1. Batched generation passes them for
  // left-padded prompts (each row counting its real tokens only, as transformers' generate does), which matters
  // for learned absolute positions (tinymoe); rotary positions only see differences.
  at::Tensor position_ids;
  std::vector<RouterHook*> hooks;
  // The statistics pass: stop once the last MoE layer has routed. Hooks see every MoE layer's routing; that layer's
  // experts, later layers, the final norm and the logits are not computed (no logits, hidden states or aux loss).
  bool routing_only = false;
};

struct ForwardOutput {
  at::Tensor logits;  // [B, T, V] (All), [B, 1, V] (Last), undefined (None)
  std::vector<at::Tensor> hidden_states;
  at::Tensor final_hidden;  // [B, T, H] when requested
  at::Tensor aux_loss;  // scalar, or undefined when not requested or the family has none
};

class MoECausalLM : public torch::nn::Module {
 public:
  // input_ids [B, T] int64; attention_mask [B, past + T] (1 = real token) or undefined.
  virtual ForwardOutput forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                const ForwardOptions& options) = 0;
  virtual std::vector<nn::MoELayer*> moe_layers() = 0;
  // The output embedding [V, H]: logits = final hidden states @ weight^T (lm_head, or the tied input embedding).
  virtual at::Tensor output_embedding() const = 0;
  virtual std::unique_ptr<nn::KVCache> make_cache() const = 0;
  virtual CheckpointBindings checkpoint_bindings() = 0;
  // Checkpoint tensors this model deliberately leaves out (glm4_moe's next-token-prediction layers); any other
  // checkpoint tensor that nothing binds is an error when loading.
  virtual bool skips_checkpoint_key(const std::string& /*key*/) const { return false; }
  virtual const ModelConfig& config() const = 0;
};

}  // namespace esft
