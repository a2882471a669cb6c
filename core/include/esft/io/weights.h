#pragma once
// Filling a model from a checkpoint. The set of checkpoint keys must equal the set of keys the model binds: a
// missing tensor or a tensor nothing uses is an error, so a wrong naming table can never load half a model.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "esft/io/safetensors.h"
#include "esft/model/model_family.h"

namespace esft {

struct KeySetDiff {
  std::vector<std::string> missing;     // bound by the model, absent from the checkpoint
  std::vector<std::string> unexpected;  // in the checkpoint, bound by nothing
  bool empty() const { return missing.empty() && unexpected.empty(); }
};

// Compares against the checkpoint's tensors as checkpoint_tensors() presents them (MXFP4 pairs under their base
// name). Keys `skip` accepts are neither bound nor unexpected.
KeySetDiff compare_keys(const CheckpointBindings& bindings, const Checkpoint& checkpoint,
                        const std::function<bool(const std::string&)>& skip = {});

// Copies every bound tensor from the checkpoint, converting dtype and device (and dequantizing MXFP4 pairs).
// Checkpoint keys the model skips (MoECausalLM::skips_checkpoint_key) are left alone. Throws esft::Error for a
// key-set difference or a shape mismatch, naming the tensor.
void load_checkpoint(MoECausalLM& model, const Checkpoint& checkpoint, const std::string& where);

// config.json + family + weights -> a ready model (eval mode, weights loaded).
std::shared_ptr<MoECausalLM> load_model(const ModelFamily& family, const ModelConfig& config,
                                        const c10::Device& device, c10::ScalarType dtype);

}  // namespace esft
