#include "esft/pipeline/trash_conversion.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <map>

#include "esft/error.h"

namespace esft::pipeline {

TrashConversion convert_to_select_moe(const Checkpoint& checkpoint, const nlohmann::json& config,
                                      const ParamNaming& naming, const TrashConversionOptions& options) {
  const auto model_type = config.value("model_type", std::string());
  if (model_type == "select_moe") throw Error("the model is already a Select-MoE model (model_type select_moe)");
  if (model_type != "olmoe") {
    throw Error("Select-MoE converts OLMoE models (model_type olmoe), not model_type \"" + model_type + "\"");
  }
  const int64_t E = config.value("num_experts", int64_t{0}), k = config.value("num_experts_per_tok", int64_t{0});
  const int64_t T = options.trash_experts == 0 ? k : options.trash_experts;
  if (T < 1) throw Error("the number of trash experts must be at least 1, not " + std::to_string(T));
  if (!(options.init_std > 0)) throw Error("the trash rows' init std must be > 0");

  // The routers by layer, so that the generator draws their rows in layer order whatever the key order.
  std::map<int, std::string> routers;
  for (const auto& key : checkpoint.keys()) {
    const auto m = naming.match(key);
    if (m && m->role == Role::ROUTER) routers[m->layer] = key;
  }
  if (routers.empty()) throw Error("the checkpoint has no router weights to grow");

  TrashConversion out;
  out.trash_experts = T;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  std::map<std::string, at::Tensor> grown;
  for (const auto& [layer, key] : routers) {
    const auto& info = checkpoint.info(key);
    if (info.shape.size() != 2 || info.shape[0] != E) {
      throw Error(key + " has shape [" + std::to_string(info.shape.empty() ? 0 : info.shape[0]) +
                  ", ...], not [num_experts " + std::to_string(E) + ", hidden]");
    }
    const auto original = checkpoint.file_of(key).view(key);
    const auto rows = at::empty({T, original.size(1)}, at::kFloat).normal_(0.0, options.init_std, generator);
    grown[key] = at::cat({original, rows.to(original.scalar_type())}, 0);
    ++out.routers_grown;
  }
  for (const auto& key : checkpoint.keys()) {
    const auto it = grown.find(key);
    out.tensors.emplace_back(key, it != grown.end() ? it->second : checkpoint.file_of(key).view(key));
  }

  out.config = config;
  out.config["model_type"] = "select_moe";
  out.config["num_trash_experts"] = T;
  out.config["trash_init_std"] = options.init_std;
  out.config["constraint_alpha"] = options.constraint.alpha;
  out.config["constraint_beta"] = options.constraint.beta;
  out.config["constraint_ratio"] = trash_ratio_name(options.constraint.ratio);
  out.config["constraint_weight"] = options.constraint.weight;
  return out;
}

}  // namespace esft::pipeline
