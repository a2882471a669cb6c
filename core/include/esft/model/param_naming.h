#pragma once
// Checkpoint tensor names as data. A family's naming table maps roles (what a tensor is) to name patterns with
// `{layer}` and `{expert}` placeholders; a trailing `*` matches any rest of the name. Code asks the table instead
// of building strings, so the same ESFT logic serves every family, as llama.cpp's per-architecture name tables do.
#include <optional>
#include <string>
#include <vector>

namespace esft {

enum class Role {
  EMBED,
  LM_HEAD,
  FINAL_NORM,
  ATTENTION,           // every tensor of a layer's attention block
  NORM,                // per-layer norms
  DENSE_MLP,           // the MLP of a dense (non-MoE) layer
  ROUTER,              // router weight [E, H]
  ROUTER_BIAS,         // learned bias on the router logits [E] (gpt-oss)
  ROUTER_SCORE_CORRECTION,  // bias used only to choose experts, not trained [E] (glm4_moe's e_score_correction_bias)
  EXPERT_GATE,         // routed expert, per-expert tensors
  EXPERT_UP,
  EXPERT_DOWN,
  EXPERT_GATE_UP,      // routed experts stored fused (all experts in one tensor)
  EXPERT_GATE_UP_BIAS,
  EXPERT_DOWN_BIAS,
  SHARED_EXPERT,       // every tensor of the shared expert(s)
  SHARED_EXPERT_GATE,  // qwen2_moe's sigmoid gate of the shared expert
};

const char* role_name(Role role);

struct NamingRule {
  Role role;
  std::string pattern;
};

struct NameMatch {
  Role role;
  int layer = -1;   // -1 when the pattern has no {layer}
  int expert = -1;  // -1 when the pattern has no {expert}
};

class ParamNaming {
 public:
  explicit ParamNaming(std::vector<NamingRule> rules);

  const std::vector<NamingRule>& rules() const { return rules_; }
  bool has(Role role) const;
  // The name of a role's tensor; throws esft::Error for a role the table lacks (an unknown role is never guessed),
  // or a pattern with a wildcard (which names many tensors).
  std::string name(Role role, int layer = -1, int expert = -1) const;
  // The pattern of a role that has exactly one rule; throws esft::Error otherwise.
  const std::string& pattern(Role role) const;
  // The first rule (in table order) whose pattern matches the whole key.
  std::optional<NameMatch> match(const std::string& key) const;
  // True when the table stores routed experts one tensor per expert (EXPERT_GATE/UP/DOWN) rather than fused.
  bool per_expert_tensors() const;

 private:
  std::vector<NamingRule> rules_;
};

// The names every transformers pre-norm decoder shares: embedding, final norm, lm_head, each layer's attention
// block and its two norms.
std::vector<NamingRule> hf_decoder_common_rules();

// The names transformers gives a pre-norm MoE decoder whose routed experts are stored per expert under
// `model.layers.{layer}.mlp.experts.{expert}` (qwen2_moe, qwen3_moe, olmoe, glm4_moe, ...). `extra` rules (a
// family's shared experts, router bias, ...) are matched before the catch-all rule for dense-layer MLPs.
ParamNaming hf_moe_decoder_naming(std::vector<NamingRule> extra = {});

// Substitutes {layer} and {expert} in a pattern.
std::string format_pattern(const std::string& pattern, int layer, int expert);

}  // namespace esft
