#include "esft/pipeline/trainable_names.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "esft/error.h"
#include "esft/pipeline/adapter_merge.h"

namespace esft::pipeline {

namespace {

bool is_number(const std::string& s) {
  return !s.empty() && s.size() <= 9 && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

std::vector<std::string> split_dots(const std::string& key) {
  std::vector<std::string> out(1);
  for (char c : key) {
    if (c == '.') out.emplace_back();
    else out.back() += c;
  }
  return out;
}

std::string join_list(const std::vector<int64_t>& ids) {
  std::string out;
  for (auto e : ids) out += (out.empty() ? "" : "|") + std::to_string(e);
  return out;
}

}  // namespace

std::string expert_prefix_pattern(const ParamNaming& naming) {
  if (!naming.per_expert_tensors()) return "";
  const auto& p = naming.pattern(Role::EXPERT_DOWN);
  const auto at = p.find("{expert}.");
  if (at == std::string::npos) throw Error("naming pattern '" + p + "' has no '{expert}.'");
  return p.substr(0, at + 9);
}

void check_expert_prefix_pattern(const std::string& pattern) {
  const auto layer = pattern.find("{layer}"), expert = pattern.find("{expert}");
  if (layer == std::string::npos || expert == std::string::npos || expert < layer ||
      pattern.find("{layer}", layer + 1) != std::string::npos || pattern.find("{expert}", expert + 1) != std::string::npos ||
      pattern.back() != '.') {
    throw Error("expert name pattern '" + pattern +
                "' must hold {layer}, then {expert}, and end with '.' (e.g. model.layers.{layer}.mlp.experts.{expert}.)");
  }
}

std::string detect_expert_prefix_pattern(const std::vector<std::string>& keys) {
  std::string found, example;
  for (const auto& key : keys) {
    const auto parts = split_dots(key);
    for (size_t i = 1; i + 1 < parts.size(); ++i) {
      if (!is_number(parts[i]) || (parts[i - 1] != "experts" && parts[i - 1] != "local_experts")) continue;
      size_t layer = i - 1;
      while (layer > 0 && !is_number(parts[layer - 1])) --layer;
      if (layer == 0) break;
      std::string pattern;
      for (size_t j = 0; j <= i; ++j) pattern += (j == layer - 1 ? "{layer}" : j == i ? "{expert}" : parts[j]) + ".";
      if (found.empty()) found = pattern, example = key;
      else if (pattern != found) {
        throw Error("--pattern auto: the keys name experts in two ways ('" + example + "' and '" + key +
                    "'); give --pattern");
      }
      break;
    }
  }
  if (found.empty()) {
    throw Error("--pattern auto: no key names a single expert (like ...layers.3.mlp.experts.5.down_proj.weight); "
                "fused expert tensors cannot be selected by name");
  }
  return found;
}

TrainableNames trainable_names(const std::vector<NamedKey>& keys, const ParamNaming& naming,
                               const std::string& prefix_pattern, const ExpertConfig& config) {
  TrainableNames out;
  out.prefix_pattern = prefix_pattern;
  std::optional<ParamNaming> prefix;
  if (!prefix_pattern.empty()) {
    check_expert_prefix_pattern(prefix_pattern);
    prefix.emplace(std::vector<NamingRule>{{Role::EXPERT_DOWN, prefix_pattern + "*"}});
  }
  // Layer sizes first: routers know E; otherwise the highest expert id seen.
  std::map<int, int64_t> highest;
  for (const auto& k : keys) {
    if (prefix) {
      if (auto m = prefix->match(k.key)) highest[m->layer] = std::max<int64_t>(highest[m->layer], m->expert + 1);
    }
    if (auto m = naming.match(k.key)) {
      if (m->role == Role::ROUTER && !k.shape.empty()) out.layer_sizes[m->layer] = k.shape[0];
      if (is_routed_expert_role(m->role) && m->expert < 0 && !k.shape.empty()) out.layer_sizes[m->layer] = k.shape[0];
    }
  }
  for (const auto& [layer, n] : highest)
    if (!out.layer_sizes.count(layer)) out.layer_sizes[layer] = n;
  check_expert_config(config, out.layer_sizes);

  for (const auto& k : keys) {
    if (prefix) {
      if (auto m = prefix->match(k.key)) {
        const auto& selected = config.experts.at(m->layer);
        if (std::find(selected.begin(), selected.end(), m->expert) != selected.end()) {
          out.expert_keys.push_back(k.key);
          auto& list = out.experts[m->layer];
          if (std::find(list.begin(), list.end(), m->expert) == list.end()) list.push_back(m->expert);
        }
        continue;
      }
    }
    const auto m = naming.match(k.key);
    // A tensor the naming table does not know is neither a routed nor a shared expert: a non-expert module.
    const auto t = m ? tensor_training(*m, config, k.shape.empty() ? 0 : k.shape[0])
                     : TensorTraining{config.non_expert_modules, {}};
    if (m && is_routed_expert_role(m->role) && m->expert >= 0 && prefix) continue;  // the prefix decides those
    if (t.whole) out.other_keys.push_back(k.key);
    for (auto i : t.slices) out.other_keys.push_back(adapter_slice_name(k.key, i));
  }
  for (auto& [layer, list] : out.experts) std::sort(list.begin(), list.end());
  return out;
}

std::string regex_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (std::string("\\.^$|?*+()[]{}").find(c) != std::string::npos) out += '\\';
    out += c;
  }
  return out;
}

std::string anchored_regex(const std::string& prefix_pattern, const std::map<int, std::vector<int64_t>>& experts,
                           const std::vector<std::string>& exact_names) {
  std::vector<std::string> alternatives;
  for (const auto& [layer, list] : experts) {
    if (list.empty()) continue;
    // The pattern ends with "{expert}.": the expert alternatives are closed by that dot.
    const auto at = prefix_pattern.find("{expert}");
    const auto head = format_pattern(prefix_pattern.substr(0, at), layer, -1);
    alternatives.push_back(regex_escape(head) + "(?:" + join_list(list) + ")" + regex_escape(prefix_pattern.substr(at + 8)));
  }
  for (const auto& name : exact_names) alternatives.push_back(regex_escape(name) + "$");
  if (alternatives.empty()) return "^(?!)";
  if (alternatives.size() == 1) return "^" + alternatives.front();
  std::string out = "^(?:";
  for (size_t i = 0; i < alternatives.size(); ++i) out += (i ? "|" : "") + alternatives[i];
  return out + ")";
}

std::string megatron_prefix_pattern(const std::string& hf) {
  std::string p = hf;
  if (p.rfind("model.layers.", 0) == 0) p = "decoder.layers." + p.substr(13);
  const auto at = p.find(".experts.{expert}.");
  if (at != std::string::npos) p.replace(at, 18, ".experts.local_experts.{expert}.");
  return p;
}

std::vector<RankNames> megatron_ranks(const TrainableNames& names, const ExpertConfig& config, int ep_size) {
  if (ep_size < 1) throw Error("--ep-size must be >= 1");
  if (names.prefix_pattern.empty()) throw Error("--megatron needs per-expert tensor names (give --pattern)");
  if (config.shared_experts || config.non_expert_modules) {
    throw Error("--megatron names routed experts only; this expert config also trains " +
                std::string(config.shared_experts ? "shared experts" : "non-expert modules") +
                ", whose Megatron-Core names depend on the family");
  }
  const auto pattern = megatron_prefix_pattern(names.prefix_pattern);
  std::vector<RankNames> ranks(static_cast<size_t>(ep_size));
  for (int r = 0; r < ep_size; ++r) ranks[r].rank = r;
  for (const auto& [layer, size] : names.layer_sizes) {
    if (size % ep_size != 0) {
      throw Error("--ep-size " + std::to_string(ep_size) + " does not divide the " + std::to_string(size) +
                  " experts of layer " + std::to_string(layer));
    }
    const int64_t per_rank = size / ep_size;
    auto it = names.experts.find(layer);
    if (it == names.experts.end()) continue;
    for (int64_t e : it->second) {
      auto& rank = ranks[static_cast<size_t>(e / per_rank)];
      rank.local_experts[layer].push_back(e % per_rank);
      rank.prefixes.push_back(format_pattern(pattern, layer, static_cast<int>(e % per_rank)));
    }
  }
  for (auto& r : ranks) r.regex = anchored_regex(pattern, r.local_experts, {});
  return ranks;
}

}  // namespace esft::pipeline
