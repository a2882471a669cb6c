#pragma once
// What a family plugin provides: the model types it serves, the model it builds from a config, its checkpoint
// naming table and its chat format.
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <memory>
#include <string>
#include <vector>

#include "esft/model/chat_format.h"
#include "esft/model/model_config.h"
#include "esft/model/moe_causal_lm.h"
#include "esft/model/param_naming.h"

namespace esft {

class ModelFamily {
 public:
  virtual ~ModelFamily() = default;
  virtual std::string name() const = 0;
  virtual std::vector<std::string> model_types() const = 0;
  // Builds the model with uninitialised weights on `device` in `dtype` (load them with load_checkpoint()).
  // Throws esft::Error for config values the family does not support.
  virtual std::shared_ptr<MoECausalLM> create(const ModelConfig& config, const c10::Device& device,
                                              c10::ScalarType dtype) const = 0;
  virtual const ParamNaming& naming() const = 0;
  // How the family's instruct models render conversations (its chat template).
  virtual const ChatFormat& chat_format() const = 0;
};

}  // namespace esft
