#include "esft/model/param_naming.h"

#include <cctype>

#include "esft/error.h"

namespace esft {

const char* role_name(Role role) {
  switch (role) {
    case Role::EMBED: return "EMBED";
    case Role::LM_HEAD: return "LM_HEAD";
    case Role::FINAL_NORM: return "FINAL_NORM";
    case Role::ATTENTION: return "ATTENTION";
    case Role::NORM: return "NORM";
    case Role::DENSE_MLP: return "DENSE_MLP";
    case Role::ROUTER: return "ROUTER";
    case Role::ROUTER_BIAS: return "ROUTER_BIAS";
    case Role::ROUTER_SCORE_CORRECTION: return "ROUTER_SCORE_CORRECTION";
    case Role::EXPERT_GATE: return "EXPERT_GATE";
    case Role::EXPERT_UP: return "EXPERT_UP";
    case Role::EXPERT_DOWN: return "EXPERT_DOWN";
    case Role::EXPERT_GATE_UP: return "EXPERT_GATE_UP";
    case Role::EXPERT_GATE_UP_BIAS: return "EXPERT_GATE_UP_BIAS";
    case Role::EXPERT_DOWN_BIAS: return "EXPERT_DOWN_BIAS";
    case Role::SHARED_EXPERT: return "SHARED_EXPERT";
    case Role::SHARED_EXPERT_GATE: return "SHARED_EXPERT_GATE";
  }
  return "?";
}

std::string format_pattern(const std::string& pattern, int layer, int expert) {
  std::string out;
  for (size_t i = 0; i < pattern.size();) {
    if (pattern.compare(i, 7, "{layer}") == 0) {
      out += std::to_string(layer);
      i += 7;
    } else if (pattern.compare(i, 8, "{expert}") == 0) {
      out += std::to_string(expert);
      i += 8;
    } else {
      out += pattern[i++];
    }
  }
  return out;
}

namespace {

// Reads a non-negative decimal at key[pos...]; no leading zeros (so "01" never names layer 1).
bool read_index(const std::string& key, size_t& pos, int& value) {
  size_t start = pos;
  while (pos < key.size() && std::isdigit(static_cast<unsigned char>(key[pos]))) ++pos;
  if (pos == start || pos - start > 9 || (key[start] == '0' && pos - start > 1)) return false;
  value = std::stoi(key.substr(start, pos - start));
  return true;
}

bool match_pattern(const std::string& pattern, const std::string& key, NameMatch& m) {
  size_t p = 0, k = 0;
  while (p < pattern.size()) {
    if (pattern[p] == '*' && p + 1 == pattern.size()) return true;  // trailing wildcard takes the rest
    if (pattern.compare(p, 7, "{layer}") == 0) {
      if (!read_index(key, k, m.layer)) return false;
      p += 7;
    } else if (pattern.compare(p, 8, "{expert}") == 0) {
      if (!read_index(key, k, m.expert)) return false;
      p += 8;
    } else {
      if (k >= key.size() || key[k] != pattern[p]) return false;
      ++p;
      ++k;
    }
  }
  return k == key.size();
}

}  // namespace

ParamNaming::ParamNaming(std::vector<NamingRule> rules) : rules_(std::move(rules)) {}

bool ParamNaming::has(Role role) const {
  for (const auto& r : rules_)
    if (r.role == role) return true;
  return false;
}

const std::string& ParamNaming::pattern(Role role) const {
  const NamingRule* found = nullptr;
  for (const auto& r : rules_) {
    if (r.role != role) continue;
    if (found) throw Error(std::string("naming table has several patterns for role ") + role_name(role));
    found = &r;
  }
  if (!found) throw Error(std::string("naming table has no pattern for role ") + role_name(role));
  return found->pattern;
}

std::string ParamNaming::name(Role role, int layer, int expert) const {
  const auto& p = pattern(role);
  if (!p.empty() && p.back() == '*') {
    throw Error(std::string("role ") + role_name(role) + " names a group of tensors (" + p + "), not one");
  }
  return format_pattern(p, layer, expert);
}

bool ParamNaming::per_expert_tensors() const {
  return has(Role::EXPERT_DOWN) && pattern(Role::EXPERT_DOWN).find("{expert}") != std::string::npos;
}

std::optional<NameMatch> ParamNaming::match(const std::string& key) const {
  for (const auto& r : rules_) {
    NameMatch m{r.role};
    if (match_pattern(r.pattern, key, m)) return m;
  }
  return std::nullopt;
}

std::vector<NamingRule> hf_decoder_common_rules() {
  return {
      {Role::EMBED, "model.embed_tokens.weight"},
      {Role::FINAL_NORM, "model.norm.weight"},
      {Role::LM_HEAD, "lm_head.weight"},
      {Role::ATTENTION, "model.layers.{layer}.self_attn.*"},
      {Role::NORM, "model.layers.{layer}.input_layernorm.weight"},
      {Role::NORM, "model.layers.{layer}.post_attention_layernorm.weight"},
  };
}

ParamNaming hf_moe_decoder_naming(std::vector<NamingRule> extra) {
  std::vector<NamingRule> rules = hf_decoder_common_rules();
  rules.insert(rules.end(), {
                                {Role::ROUTER, "model.layers.{layer}.mlp.gate.weight"},
                                {Role::EXPERT_GATE, "model.layers.{layer}.mlp.experts.{expert}.gate_proj.weight"},
                                {Role::EXPERT_UP, "model.layers.{layer}.mlp.experts.{expert}.up_proj.weight"},
                                {Role::EXPERT_DOWN, "model.layers.{layer}.mlp.experts.{expert}.down_proj.weight"},
                            });
  rules.insert(rules.end(), extra.begin(), extra.end());
  rules.push_back({Role::DENSE_MLP, "model.layers.{layer}.mlp.*"});
  return ParamNaming(std::move(rules));
}

}  // namespace esft
