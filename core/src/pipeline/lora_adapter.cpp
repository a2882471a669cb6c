#include "esft/pipeline/lora_adapter.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <set>

#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/io/json_file.h"
#include "esft/nn/expert_bank.h"
#include "esft/nn/linear.h"
#include "esft/nn/router.h"

namespace esft::pipeline {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPeftPrefix = "base_model.model.";
constexpr const char* kGateUpParam = "gate_up_proj";  // transformers' names of an expert bank's tensors
constexpr const char* kDownParam = "down_proj";

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// PEFT's rule for a list of target names: the whole name, or its dotted tail.
bool name_matches(const std::string& target, const std::string& name) {
  return name == target || ends_with(name, "." + target);
}

std::string last_component(const std::string& name) {
  const auto dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

// The modules LoRA can adapt, by full name, found in one walk of the module tree.
struct AdaptableModules {
  std::map<std::string, nn::Linear*> linears;
  std::map<std::string, nn::Router*> routers;
  std::map<std::string, nn::ExpertBank*> banks;

  explicit AdaptableModules(MoECausalLM& model) {
    for (const auto& item : model.named_modules("", /*include_self=*/false)) {
      auto* m = item.value().get();
      if (auto* l = dynamic_cast<nn::Linear*>(m)) linears[item.key()] = l;
      else if (auto* r = dynamic_cast<nn::Router*>(m)) routers[item.key()] = r;
      else if (auto* b = dynamic_cast<nn::ExpertBank*>(m)) banks[item.key()] = b;
    }
  }
  template <typename T>
  static T& at(const std::map<std::string, T*>& modules, const std::string& name) {
    const auto it = modules.find(name);
    if (it == modules.end()) throw Error("the model has no module " + name);
    return *it->second;
  }
  nn::Linear& linear(const std::string& name) const { return at(linears, name); }
  nn::Router& router(const std::string& name) const { return at(routers, name); }
  nn::ExpertBank& bank(const std::string& name) const { return at(banks, name); }
};

// The PEFT key prefix of a target's pair: an expert bank with both tensors adapted nests gate_up_proj's wrapper
// inside down_proj's, one `base_layer` down.
std::string peft_module(const LoraTarget& t, bool bank_has_both) {
  if (t.kind == LoraTarget::Kind::ExpertGateUp && bank_has_both) return t.module + ".base_layer";
  return t.module;
}

std::set<std::string> banks_with_both(const std::vector<LoraTarget>& targets) {
  std::map<std::string, int> count;
  for (const auto& t : targets)
    if (t.kind == LoraTarget::Kind::ExpertGateUp || t.kind == LoraTarget::Kind::ExpertDown) ++count[t.module];
  std::set<std::string> out;
  for (const auto& [name, n] : count)
    if (n == 2) out.insert(name);
  return out;
}

nn::LoraPair& pair_of(const AdaptableModules& modules, const LoraTarget& t) {
  std::shared_ptr<nn::LoraPair> pair;
  switch (t.kind) {
    case LoraTarget::Kind::Linear: pair = modules.linear(t.module).lora; break;
    case LoraTarget::Kind::Router: pair = modules.router(t.module).lora; break;
    case LoraTarget::Kind::ExpertGateUp: pair = modules.bank(t.module).gate_up_lora; break;
    case LoraTarget::Kind::ExpertDown: pair = modules.bank(t.module).down_lora; break;
  }
  if (!pair) throw Error("no LoRA pair is attached to " + t.module);
  return *pair;
}

// A target's weight as [out, in] (per expert for a bank).
std::pair<int64_t, int64_t> target_dims(const AdaptableModules& modules, const LoraTarget& t) {
  switch (t.kind) {
    case LoraTarget::Kind::Linear: {
      const auto& w = modules.linear(t.module).weight;
      return {w.size(0), w.size(1)};
    }
    case LoraTarget::Kind::Router: {
      const auto& w = modules.router(t.module).weight;
      return {w.size(0), w.size(1)};
    }
    case LoraTarget::Kind::ExpertGateUp: {
      const auto& spec = modules.bank(t.module).spec();
      return {spec.first_width(), spec.hidden};
    }
    case LoraTarget::Kind::ExpertDown: {
      const auto& spec = modules.bank(t.module).spec();
      return {spec.hidden, spec.intermediate};
    }
  }
  return {0, 0};
}

void freeze_everything(MoECausalLM& model, const AdaptableModules& modules) {
  for (auto& [name, bank] : modules.banks) bank->set_trainable_experts({});
  for (auto& p : model.parameters()) p.requires_grad_(false);
}

}  // namespace

nlohmann::json LoraConfig::to_json() const {
  return {{"rank", spec.rank}, {"alpha", spec.alpha}, {"dropout", spec.dropout}, {"rslora", spec.rslora},
          {"targets", targets}};
}

std::vector<LoraTarget> attach_lora(MoECausalLM& model, const LoraConfig& config, std::vector<std::string>* skipped) {
  if (config.targets.empty()) throw Error("LoRA needs at least one target");
  const AdaptableModules modules(model);
  freeze_everything(model, modules);
  std::map<std::string, int> hits;
  for (const auto& t : config.targets) hits[t] = 0;
  std::vector<LoraTarget> targets;
  std::vector<std::string> examples;  // names a user could have meant, for the error below
  for (const auto& [name, linear] : modules.linears) {
    if (examples.size() < 6 && name.find(".1.") == std::string::npos) examples.push_back(last_component(name));
    bool picked = false;
    for (const auto& t : config.targets) {
      bool hit = name_matches(t, name);
      if (t == "all-linear" && last_component(name) != "lm_head") {
        // A layer narrower than the rank (qwen2_moe's shared_expert_gate, one output) cannot take the pair: "all"
        // means all that can, and the caller reports the rest. Named explicitly, such a layer is an error below.
        if (std::min(linear->weight.size(0), linear->weight.size(1)) >= config.spec.rank) hit = true;
        else if (skipped) skipped->push_back(name);
      }
      if (hit) ++hits[t], picked = true;
    }
    if (picked) targets.push_back({LoraTarget::Kind::Linear, name});
  }
  for (const auto& [name, router] : modules.routers) {
    bool picked = false;
    for (const auto& t : config.targets)
      if (t != "all-linear" && name_matches(t, name)) ++hits[t], picked = true;
    if (picked) targets.push_back({LoraTarget::Kind::Router, name});
  }
  for (const auto& [name, bank] : modules.banks) {
    bool gate_up = false, down = false;
    for (const auto& t : config.targets) {
      if (t == "all-linear") continue;
      const bool both = name_matches(t, name);
      const bool g = ends_with(t, std::string(".") + kGateUpParam) &&
                     name_matches(t.substr(0, t.size() - std::string(kGateUpParam).size() - 1), name);
      const bool d = ends_with(t, std::string(".") + kDownParam) &&
                     name_matches(t.substr(0, t.size() - std::string(kDownParam).size() - 1), name);
      if (both || g || d) ++hits[t];
      gate_up = gate_up || both || g;
      down = down || both || d;
    }
    if (gate_up) targets.push_back({LoraTarget::Kind::ExpertGateUp, name});
    if (down) targets.push_back({LoraTarget::Kind::ExpertDown, name});
  }
  for (const auto& [t, n] : hits) {
    if (n > 0) continue;
    std::string known;
    for (const auto& e : std::set<std::string>(examples.begin(), examples.end())) known += (known.empty() ? "" : ", ") + e;
    throw Error("LoRA target '" + t + "' matches no linear layer, router or expert bank of this model (linear layers "
                "are named like " + known + "; routers `gate`, experts `experts`)");
  }
  for (const auto& t : targets) {
    // The logits read the output embedding itself (tied or not), never through lm_head's forward: a pair there
    // would never train.
    if (t.kind == LoraTarget::Kind::Linear && last_component(t.module) == "lm_head") {
      throw Error("LoRA on lm_head is not built (the logits are computed from its weight directly); leave it out of lora_targets");
    }
    const auto [out_features, in_features] = target_dims(modules, t);
    if (config.spec.rank > std::min(out_features, in_features)) {
      throw Error("LoRA on " + t.module + ": rank " + std::to_string(config.spec.rank) + " exceeds the target's dimensions " +
                  std::to_string(out_features) + " x " + std::to_string(in_features));
    }
    try {
      switch (t.kind) {
        case LoraTarget::Kind::Linear: modules.linear(t.module).add_lora(config.spec); break;
        case LoraTarget::Kind::Router: modules.router(t.module).add_lora(config.spec); break;
        case LoraTarget::Kind::ExpertGateUp: modules.bank(t.module).add_lora(true, false, config.spec); break;
        case LoraTarget::Kind::ExpertDown: modules.bank(t.module).add_lora(false, true, config.spec); break;
      }
    } catch (const Error& e) {
      throw Error("LoRA on " + t.module + ": " + e.what());
    }
  }
  return targets;
}

NamedTensors peft_lora_tensors(MoECausalLM& model, const std::vector<LoraTarget>& targets) {
  const auto both = banks_with_both(targets);
  const AdaptableModules modules(model);
  NamedTensors out;
  for (const auto& t : targets) {
    const auto& pair = pair_of(modules, t);
    const auto prefix = kPeftPrefix + peft_module(t, both.count(t.module) != 0);
    out.emplace_back(prefix + ".lora_A.weight", cpu_copy(pair.A()));
    out.emplace_back(prefix + ".lora_B.weight", cpu_copy(pair.B()));
  }
  return out;
}

uint64_t save_peft_lora_adapter(MoECausalLM& model, const std::vector<LoraTarget>& targets, const LoraConfig& config,
                                const fs::path& dir, const std::string& base_model, const nlohmann::json& extra) {
  nlohmann::json modules = nlohmann::json::array(), parameters = nlohmann::json::array();
  for (const auto& t : targets) {
    switch (t.kind) {
      case LoraTarget::Kind::Linear: modules.push_back(t.module); break;
      case LoraTarget::Kind::Router: parameters.push_back(t.module + ".weight"); break;
      case LoraTarget::Kind::ExpertGateUp: parameters.push_back(t.module + "." + kGateUpParam); break;
      case LoraTarget::Kind::ExpertDown: parameters.push_back(t.module + "." + kDownParam); break;
    }
  }
  nlohmann::json cfg = {{"peft_type", "LORA"},
                        {"task_type", "CAUSAL_LM"},
                        {"base_model_name_or_path", base_model},
                        {"r", config.spec.rank},
                        {"lora_alpha", config.spec.alpha},
                        {"lora_dropout", config.spec.dropout},
                        {"use_rslora", config.spec.rslora},
                        {"target_modules", modules},
                        {"target_parameters", parameters.empty() ? nlohmann::json(nullptr) : parameters},
                        {"bias", "none"},
                        {"fan_in_fan_out", false},
                        {"use_dora", false},
                        {"init_lora_weights", true},
                        {"inference_mode", true},
                        {"modules_to_save", nullptr},
                        {"rank_pattern", nlohmann::json::object()},
                        {"alpha_pattern", nlohmann::json::object()}};
  const auto tensors = peft_lora_tensors(model, targets);
  uint64_t bytes = 0;
  for (const auto& [name, t] : tensors) bytes += t.nbytes();
  AtomicDirectory staging(dir);
  save_safetensors(staging.path() / kPeftWeightsFile, tensors, {{"format", "pt"}});
  write_text_atomically(staging.path() / kPeftConfigFile, cfg.dump(2) + "\n");
  write_text_atomically(staging.path() / kEsftLoraFile, extra.dump(2) + "\n");
  staging.commit(/*replace=*/true);
  return bytes;
}

bool is_peft_adapter(const fs::path& dir) { return fs::is_regular_file(dir / kPeftConfigFile); }

PeftLoraAdapter PeftLoraAdapter::open(const fs::path& dir) {
  PeftLoraAdapter a;
  a.dir = dir;
  const auto where = (dir / kPeftConfigFile).string();
  a.config = read_json_file(dir / kPeftConfigFile);
  const auto& c = a.config;
  if (!c.is_object() || c.value("peft_type", "") != "LORA") {
    throw Error(where + ": not a LoRA adapter (peft_type " + (c.is_object() ? c.value("peft_type", "missing") : "?") + ")");
  }
  auto refuse_if = [&](bool cond, const std::string& what) {
    if (cond) throw Error(where + ": " + what + " is not supported");
  };
  refuse_if(c.value("use_dora", false), "DoRA (use_dora)");
  refuse_if(c.value("fan_in_fan_out", false), "fan_in_fan_out");
  refuse_if(c.contains("bias") && c["bias"] != "none", "a LoRA bias");
  refuse_if(c.contains("rank_pattern") && c["rank_pattern"].is_object() && !c["rank_pattern"].empty(), "rank_pattern");
  refuse_if(c.contains("alpha_pattern") && c["alpha_pattern"].is_object() && !c["alpha_pattern"].empty(), "alpha_pattern");
  refuse_if(c.contains("modules_to_save") && c["modules_to_save"].is_array() && !c["modules_to_save"].empty(),
            "modules_to_save");
  try {
    a.lora.spec.rank = c.at("r").get<int64_t>();
    a.lora.spec.alpha = c.at("lora_alpha").get<double>();
    a.lora.spec.dropout = c.value("lora_dropout", 0.0);
    a.lora.spec.rslora = c.value("use_rslora", false);
    a.lora.targets.clear();
    if (c.contains("target_modules") && c["target_modules"].is_array())
      for (const auto& t : c["target_modules"]) a.lora.targets.push_back(t.get<std::string>());
    if (c.contains("target_parameters") && c["target_parameters"].is_array())
      for (const auto& t : c["target_parameters"]) a.target_parameters.push_back(t.get<std::string>());
    a.lora.targets.insert(a.lora.targets.end(), a.target_parameters.begin(), a.target_parameters.end());
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": " + e.what());
  }
  if (a.lora.spec.rank < 1) throw Error(where + ": r must be at least 1");
  const auto weights = dir / kPeftWeightsFile;
  if (!fs::is_regular_file(weights)) throw Error(dir.string() + ": no " + kPeftWeightsFile);
  const SafetensorsFile file(weights);
  for (const auto& info : file.tensors()) a.tensors.emplace_back(info.name, file.load(info.name));
  if (a.tensors.empty()) throw Error(weights.string() + ": no tensors");
  if (fs::is_regular_file(dir / kEsftLoraFile)) a.esft = read_json_file(dir / kEsftLoraFile);
  return a;
}

int64_t fold_peft_lora_adapter(MoECausalLM& model, const PeftLoraAdapter& adapter) {
  // Pair up lora_A and lora_B by the module key they sit on.
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> pairs;
  for (const auto& [key, t] : adapter.tensors) {
    const std::string prefix = kPeftPrefix;
    std::string module;
    bool is_a = false;
    if (key.rfind(prefix, 0) == 0 && ends_with(key, ".lora_A.weight")) {
      module = key.substr(prefix.size(), key.size() - prefix.size() - std::string(".lora_A.weight").size()), is_a = true;
    } else if (key.rfind(prefix, 0) == 0 && ends_with(key, ".lora_B.weight")) {
      module = key.substr(prefix.size(), key.size() - prefix.size() - std::string(".lora_B.weight").size());
    } else {
      throw Error(adapter.dir.string() + ": tensor " + key + " is not a LoRA pair's (base_model.model.<module>.lora_A/B.weight)");
    }
    (is_a ? pairs[module].first : pairs[module].second) = t;
  }
  const AdaptableModules modules(model);
  const auto& linears = modules.linears;
  const auto& routers = modules.routers;
  const auto& banks = modules.banks;
  nn::LoraSpec spec = adapter.lora.spec;
  spec.dropout = 0;  // folding
  int64_t folded = 0;
  auto copy_into = [&](nn::LoraPair& pair, const std::string& module, const at::Tensor& A, const at::Tensor& B) {
    if (!A.defined() || !B.defined()) throw Error(adapter.dir.string() + ": " + module + " lacks lora_A or lora_B");
    if (A.sizes() != pair.A().sizes() || B.sizes() != pair.B().sizes()) {
      throw Error(adapter.dir.string() + ": the pair on " + module + " has shapes " + shape_text(A.sizes()) + " and " +
                  shape_text(B.sizes()) + ", the model needs " + shape_text(pair.A().sizes()) + " and " + shape_text(pair.B().sizes()));
    }
    at::NoGradGuard no_grad;
    pair.A().copy_(A);
    pair.B().copy_(B);
  };
  for (const auto& [module, ab] : pairs) {
    const auto& [A, B] = ab;
    if (auto it = linears.find(module); it != linears.end()) {
      if (!A.defined() || !B.defined()) throw Error(adapter.dir.string() + ": " + module + " lacks lora_A or lora_B");
      copy_into(it->second->add_lora(spec), module, A, B);
      it->second->fold_lora();
    } else if (auto r = routers.find(module); r != routers.end()) {
      copy_into(r->second->add_lora(spec), module, A, B);
      r->second->fold_lora();
    } else {
      // An expert bank: `<bank>` holds the outermost wrapper's pair, `<bank>.base_layer` the next one in.
      std::string bank_name = module;
      int depth = 0;
      while (ends_with(bank_name, ".base_layer")) bank_name.resize(bank_name.size() - std::string(".base_layer").size()), ++depth;
      const auto b = banks.find(bank_name);
      if (b == banks.end()) throw Error(adapter.dir.string() + ": the model has no linear layer, router or expert bank " + module);
      std::vector<std::string> adapted;  // the bank's adapted tensors, in parameter order (innermost first)
      for (const char* param : {kGateUpParam, kDownParam}) {
        for (const auto& t : adapter.target_parameters)
          if (name_matches(t, bank_name + "." + param)) {
            adapted.emplace_back(param);
            break;
          }
      }
      if (depth >= static_cast<int>(adapted.size())) {
        throw Error(adapter.dir.string() + ": " + module + " is not among the adapter's target_parameters");
      }
      const bool gate_up = adapted[adapted.size() - 1 - static_cast<size_t>(depth)] == kGateUpParam;
      auto& bank = *b->second;
      const int64_t E = bank.spec().num_experts;
      if (!A.defined() || !B.defined()) throw Error(adapter.dir.string() + ": " + module + " lacks lora_A or lora_B");
      if (A.dim() != 2 || A.size(0) < E || A.size(0) % E != 0) {
        throw Error(adapter.dir.string() + ": the pair on " + module + " has lora_A " + shape_text(A.sizes()) +
                    ", not [rank x " + std::to_string(E) + " experts, in]");
      }
      if (!bank.trainable_experts().empty()) bank.set_trainable_experts({});
      nn::LoraSpec bank_spec = spec;
      bank_spec.rank = A.size(0) / E;
      bank.add_lora(gate_up, !gate_up, bank_spec);
      copy_into(gate_up ? *bank.gate_up_lora : *bank.down_lora, module, A, B);
      bank.fold_lora();
    }
    ++folded;
  }
  return folded;
}

void fold_attached_lora(MoECausalLM& model) {
  const AdaptableModules modules(model);
  for (auto& [name, m] : modules.linears) m->fold_lora();
  for (auto& [name, m] : modules.routers) m->fold_lora();
  for (auto& [name, m] : modules.banks) m->fold_lora();
}

}  // namespace esft::pipeline
