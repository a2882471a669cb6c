#include "esft/weights.h"

#include <ATen/ATen.h>

#include <set>
#include <sstream>

#include "esft/error.h"

namespace esft {

namespace {
std::string shape_string(at::IntArrayRef shape) {
  std::ostringstream s;
  s << '[';
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? "," : "") << shape[i];
  s << ']';
  return s.str();
}

std::string list_some(const std::vector<std::string>& names) {
  std::string out = "'" + names.front() + "'";
  if (names.size() > 1) out += " and " + std::to_string(names.size() - 1) + " more";
  return out;
}
}  // namespace

KeySetDiff compare_keys(const CheckpointBindings& bindings, const Checkpoint& checkpoint) {
  KeySetDiff diff;
  std::set<std::string> bound;
  for (const auto& b : bindings) {
    bound.insert(b.key);
    if (!checkpoint.contains(b.key)) diff.missing.push_back(b.key);
  }
  for (const auto& key : checkpoint.keys())
    if (!bound.count(key)) diff.unexpected.push_back(key);
  return diff;
}

void load_checkpoint(MoECausalLM& model, const Checkpoint& checkpoint, const std::string& where) {
  auto bindings = model.checkpoint_bindings();
  auto diff = compare_keys(bindings, checkpoint);
  if (!diff.missing.empty()) {
    throw Error("tensor " + list_some(diff.missing) + " is missing from the checkpoint (" + where + ")");
  }
  if (!diff.unexpected.empty()) {
    throw Error("checkpoint tensor " + list_some(diff.unexpected) + " is not part of a " + model.config().model_type +
                " model (" + where + ")");
  }
  at::NoGradGuard no_grad;
  for (const auto& b : bindings) {
    auto target = b.value();
    const auto& info = checkpoint.info(b.key);
    if (at::IntArrayRef(info.shape) != target.sizes()) {
      throw Error("tensor '" + b.key + "' has shape " + shape_string(info.shape) + " in the checkpoint but the model expects " +
                  shape_string(target.sizes()) + " (" + where + ")");
    }
    // One copy, straight from the mapped file into the model; copy_ converts dtype and moves across devices.
    target.copy_(checkpoint.file_of(b.key).view(b.key));
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
