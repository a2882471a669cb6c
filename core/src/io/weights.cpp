#include "esft/io/weights.h"

#include <ATen/ATen.h>

#include <map>
#include <set>
#include <sstream>

#include "esft/error.h"
#include "esft/io/safetensors.h"
#include "esft/io/mxfp4.h"
#include "esft/nn/moe_layer.h"

namespace esft {

namespace {

std::string list_some(const std::vector<std::string>& names) {
  std::string out = "'" + names.front() + "'";
  if (names.size() > 1) out += " and " + std::to_string(names.size() - 1) + " more";
  return out;
}
KeySetDiff compare_with(const CheckpointBindings& bindings, const std::vector<CheckpointTensor>& tensors,
                        const std::function<bool(const std::string&)>& skip) {
  KeySetDiff diff;
  std::set<std::string> bound, stored;
  for (const auto& t : tensors)
    if (!skip || !skip(t.key)) stored.insert(t.key);
  for (const auto& b : bindings) {
    bound.insert(b.key());
    if (!stored.count(b.key())) diff.missing.push_back(b.key());
  }
  for (const auto& key : stored)
    if (!bound.count(key)) diff.unexpected.push_back(key);
  return diff;
}

}  // namespace

KeySetDiff compare_keys(const CheckpointBindings& bindings, const Checkpoint& checkpoint,
                        const std::function<bool(const std::string&)>& skip) {
  return compare_with(bindings, checkpoint_tensors(checkpoint), skip);
}

void load_checkpoint(MoECausalLM& model, const Checkpoint& checkpoint, const std::string& where) {
  auto bindings = model.checkpoint_bindings();
  // Under expert parallelism each rank reads only the experts it holds.
  const auto layers = model.moe_layers();
  auto skip = [&model, &layers](const std::string& key) {
    if (model.skips_checkpoint_key(key)) return true;
    for (auto* layer : layers)
      if (layer->experts().held_elsewhere(key)) return true;
    return false;
  };
  auto tensors = checkpoint_tensors(checkpoint);
  auto diff = compare_with(bindings, tensors, skip);
  if (!diff.missing.empty()) {
    throw Error("tensor " + list_some(diff.missing) + (diff.missing.size() > 1 ? " are" : " is") +
                " missing from the checkpoint (" + where + ")");
  }
  if (!diff.unexpected.empty()) {
    throw Error("checkpoint tensor " + list_some(diff.unexpected) + (diff.unexpected.size() > 1 ? " are" : " is") +
                " not part of a " + model.config().model_type +
                " model (" + where + ")");
  }
  std::map<std::string, CheckpointTensor> stored;
  for (auto& t : tensors) stored.emplace(t.key, std::move(t));
  for (const auto& b : bindings) {
    const auto& tensor = stored.at(b.key());
    const auto expected = b.shape();
    if (tensor.shape != expected) {
      throw Error("tensor '" + b.key() + "' has shape " + shape_text(tensor.shape) + " in the checkpoint but the model expects " +
                  shape_text(expected) + " (" + where + ")");
    }
    // Plain tensors go in one copy, straight from the mapped file; assign converts dtype and moves across devices.
    b.assign(read_checkpoint_tensor(checkpoint, tensor, b.parts().front().tensor.scalar_type()));
  }
}

std::shared_ptr<MoECausalLM> load_model(const ModelFamily& family, const ModelConfig& config,
                                        const c10::Device& device, c10::ScalarType dtype) {
  auto checkpoint = Checkpoint::open(config.model_dir);
  auto model = family.create(config, device, dtype);
  load_checkpoint(*model, checkpoint, config.model_dir.string());
  model->eval();
  return model;
}

}  // namespace esft
