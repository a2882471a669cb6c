#include "esft/pipeline/trainable.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <functional>
#include <set>
#include <unordered_map>

#include "esft/error.h"
#include "esft/pipeline/adapter_merge.h"

namespace esft::pipeline {

MoELayerSizes moe_layer_sizes(MoECausalLM& model) {
  MoELayerSizes out;
  for (auto* layer : model.moe_layers()) out[layer->layer_index()] = layer->num_experts();
  return out;
}

void check_expert_config(const ExpertConfig& config, const MoELayerSizes& layers) {
  for (const auto& [layer, experts] : config.experts) {
    auto it = layers.find(layer);
    if (it == layers.end()) {
      std::string moe;
      for (const auto& kv : layers) moe += (moe.empty() ? "" : ",") + std::to_string(kv.first);
      throw Error("expert config: layer " + std::to_string(layer) + " is not an MoE layer of this model (MoE layers: " +
                  moe + ")");
    }
    std::set<int64_t> seen;
    for (int64_t e : experts) {
      if (e < 0 || e >= it->second) {
        throw Error("expert config: layer " + std::to_string(layer) + " names expert " + std::to_string(e) +
                    ", but the model has experts 0.." + std::to_string(it->second - 1));
      }
      if (!seen.insert(e).second) {
        throw Error("expert config: layer " + std::to_string(layer) + " lists expert " + std::to_string(e) + " twice");
      }
    }
  }
  for (const auto& kv : layers) {
    if (!config.experts.count(kv.first)) {
      throw Error("expert config: MoE layer " + std::to_string(kv.first) +
                  " has no entry (write [] to train none of its experts)");
    }
  }
}

bool is_routed_expert_role(Role role) {
  switch (role) {
    case Role::EXPERT_GATE:
    case Role::EXPERT_UP:
    case Role::EXPERT_DOWN:
    case Role::EXPERT_GATE_UP:
    case Role::EXPERT_GATE_UP_BIAS:
    case Role::EXPERT_DOWN_BIAS: return true;
    default: return false;
  }
}

TensorTraining tensor_training(const NameMatch& match, const ExpertConfig& config, int64_t fused_experts) {
  TensorTraining t;
  if (is_routed_expert_role(match.role)) {
    auto it = config.experts.find(match.layer);
    if (it == config.experts.end()) return t;
    const auto& selected = it->second;
    if (match.expert >= 0) {
      t.whole = std::find(selected.begin(), selected.end(), match.expert) != selected.end();
    } else {
      t.slices = selected;
      std::sort(t.slices.begin(), t.slices.end());
      if (fused_experts > 0 && static_cast<int64_t>(t.slices.size()) == fused_experts) t.whole = true, t.slices.clear();
    }
    return t;
  }
  switch (match.role) {
    case Role::SHARED_EXPERT:
    case Role::SHARED_EXPERT_GATE: t.whole = config.shared_experts; break;
    case Role::ROUTER_SCORE_CORRECTION: t.whole = false; break;
    default: t.whole = config.non_expert_modules;
  }
  return t;
}

namespace {

NameMatch role_of(const ParamNaming& naming, const std::string& key) {
  auto m = naming.match(key);
  if (!m) throw Error("the family's naming table has no rule for checkpoint tensor '" + key + "'");
  return *m;
}

// Every parameter gets its flag from the checkpoint tensor it holds: `trains(match)` for that tensor's role.
void set_trainable_by_role(MoECausalLM& model, const ParamNaming& naming,
                           const std::function<bool(const NameMatch&)>& trains_role) {
  std::unordered_map<const void*, bool> trains;
  for (const auto& binding : model.checkpoint_bindings()) {
    const auto match = role_of(naming, binding.key());
    const bool flag = trains_role(match);
    for (const auto& part : binding.parts()) {
      auto [it, fresh] = trains.emplace(part.tensor.unsafeGetTensorImpl(), flag);
      if (!fresh && it->second != flag) {
        throw Error("checkpoint tensor '" + binding.key() + "' shares a model tensor with a tensor of another role");
      }
    }
  }
  for (auto& item : model.named_parameters()) {
    const auto& name = item.key();
    auto& p = item.value();
    auto it = trains.find(p.unsafeGetTensorImpl());
    if (it == trains.end() && p.numel() != 0) {
      throw Error("internal: parameter '" + name + "' is bound to no checkpoint tensor");
    }
    p.requires_grad_(it != trains.end() && it->second && p.numel() != 0);
  }
}

}  // namespace

void apply_expert_config(MoECausalLM& model, const ParamNaming& naming, const ExpertConfig& config) {
  check_expert_config(config, moe_layer_sizes(model));
  for (auto* layer : model.moe_layers()) layer->set_trainable_experts(config.experts.at(layer->layer_index()));
  // The expert banks' parameters hold exactly the selected experts now (the rest moved to buffers), so bound
  // parameters of expert roles train.
  set_trainable_by_role(model, naming, [&](const NameMatch& m) {
    return is_routed_expert_role(m.role) || tensor_training(m, config).whole;
  });
}

ExpertConfig everything_config(MoECausalLM& model) {
  ExpertConfig all;
  for (const auto& [layer, experts] : moe_layer_sizes(model))
    for (int64_t e = 0; e < experts; ++e) all.experts[layer].push_back(e);
  all.shared_experts = all.non_expert_modules = true;
  return all;
}

void train_only_roles(MoECausalLM& model, const ParamNaming& naming, const std::vector<Role>& roles) {
  for (auto* layer : model.moe_layers()) layer->set_trainable_experts({});  // every expert to buffers
  set_trainable_by_role(model, naming, [&](const NameMatch& m) {
    return std::find(roles.begin(), roles.end(), m.role) != roles.end() && !is_routed_expert_role(m.role);
  });
}

std::vector<std::pair<std::string, at::Tensor>> trainable_parameters(MoECausalLM& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& item : model.named_parameters()) {
    if (item.value().requires_grad() && item.value().numel() != 0) out.emplace_back(item.key(), item.value());
  }
  return out;
}

NamedTensors trained_checkpoint_tensors(MoECausalLM& model) {
  NamedTensors out;
  for (const auto& b : model.checkpoint_bindings()) {
    const auto& parts = b.parts();
    const auto n = std::count_if(parts.begin(), parts.end(), [](const BoundPart& p) { return p.trainable(); });
    if (n == 0) continue;
    if (!b.is_stacked() || n == static_cast<long>(parts.size())) {
      out.emplace_back(b.key(), cpu_copy(b.value()));
      continue;
    }
    for (size_t i = 0; i < parts.size(); ++i) {
      if (parts[i].trainable()) out.emplace_back(adapter_slice_name(b.key(), static_cast<int64_t>(i)), cpu_copy(b.part(i)));
    }
  }
  return out;
}

int64_t load_trained_tensors(MoECausalLM& model, const NamedTensors& tensors, const std::string& source) {
  std::unordered_map<std::string, const CheckpointBinding*> by_key;
  const auto bindings = model.checkpoint_bindings();
  for (const auto& b : bindings) by_key[b.key()] = &b;
  int64_t loaded = 0;
  for (const auto& [name, value] : tensors) {
    std::string key = name;
    int64_t slice = -1;
    if (!by_key.count(key)) parse_adapter_slice_name(name, key, slice);  // `key#i`: slice i of a fused tensor
    auto it = by_key.find(key);
    if (it == by_key.end()) throw Error(source + ": tensor '" + name + "' is not a tensor of this model");
    const auto& b = *it->second;
    if (slice < 0) {
      b.assign(value);
    } else {
      if (!b.is_stacked() || slice >= static_cast<int64_t>(b.parts().size())) {
        throw Error(source + ": '" + name + "' names a slice that tensor '" + key + "' does not have");
      }
      b.assign_part(static_cast<size_t>(slice), value);
    }
    ++loaded;
  }
  return loaded;
}

}  // namespace esft::pipeline
