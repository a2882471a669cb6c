#pragma once
// `params`: the checkpoint names an expert config trains (shared/spec/ESFT.md §3), for frameworks that freeze by
// name: a list, one anchored regex, or Megatron-Core names per expert-parallel rank. Works from the checkpoint's
// key list alone; the model is never built.
//
// Routed experts are found through an expert prefix pattern such as `model.layers.{layer}.mlp.experts.{expert}.`
// (from the family's naming table, detected from the keys, or given). Fused expert tensors (gpt-oss) train in
// slices, named `{key}#{i}` as in adapters.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "esft/model/param_naming.h"
#include "esft/pipeline/expert_selection.h"
#include "esft/pipeline/trainable.h"

namespace esft::pipeline {

// The naming table's per-expert prefix (EXPERT_DOWN's pattern up to `{expert}.`); empty for fused experts.
std::string expert_prefix_pattern(const ParamNaming& naming);
// `--pattern auto`: the prefix common to the keys whose path has `experts.<n>.` after a layer number. Throws
// esft::Error when no key looks like a per-expert tensor or the keys disagree.
std::string detect_expert_prefix_pattern(const std::vector<std::string>& keys);
// Throws esft::Error unless `pattern` has one {layer}, then one {expert}, and ends with '.'.
void check_expert_prefix_pattern(const std::string& pattern);

struct NamedKey {
  std::string key;
  std::vector<int64_t> shape;
};

struct TrainableNames {
  std::string prefix_pattern;                   // may be empty (fused experts only)
  std::map<int, std::vector<int64_t>> experts;  // selected experts with per-expert tensors, per layer, ascending
  MoELayerSizes layer_sizes;                    // MoE layers found and their expert counts
  std::vector<std::string> expert_keys;         // per-expert tensors that train
  std::vector<std::string> other_keys;          // other tensors that train, and `{key}#{i}` fused slices
};

// Classifies every key and checks the config against the MoE layers found (check_expert_config). Expert counts
// come from the routers' shapes ([E, H]) when the naming table knows them, else from the highest expert id seen.
TrainableNames trainable_names(const std::vector<NamedKey>& keys, const ParamNaming& naming,
                               const std::string& prefix_pattern, const ExpertConfig& config);

std::string regex_escape(const std::string& text);
// One anchored regex that matches exactly the trained keys: per layer `^<prefix>(?:5|17|40)\.` (the closing dot
// keeps 1 from matching 10), other tensors by their full names. A regex that matches nothing when nothing trains.
std::string anchored_regex(const std::string& prefix_pattern, const std::map<int, std::vector<int64_t>>& experts,
                           const std::vector<std::string>& exact_names);

// Megatron-Core's name for an expert prefix: `model.layers` -> `decoder.layers`, `.experts.{expert}.` ->
// `.experts.local_experts.{expert}.`.
std::string megatron_prefix_pattern(const std::string& hf_prefix_pattern);

struct RankNames {
  int rank = 0;
  std::map<int, std::vector<int64_t>> local_experts;  // per layer, the rank's local indices
  std::vector<std::string> prefixes;                  // `decoder.layers.3.mlp.experts.local_experts.1.` ...
  std::string regex;
};
// Expert parallelism places experts in contiguous blocks: rank = e / (E / P), local index = e % (E / P). Throws
// esft::Error when P does not divide a layer's expert count, or when the config trains anything but routed
// experts (other modules' Megatron names are family-specific and not derived here).
std::vector<RankNames> megatron_ranks(const TrainableNames& names, const ExpertConfig& config, int ep_size);

}  // namespace esft::pipeline
