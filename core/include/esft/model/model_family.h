#pragma once
// What a family plugin provides: the model types it serves, the model it builds from a config, its checkpoint
// naming table and its chat format.
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <functional>
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

// A family from its parts and a function that builds its model (after checking the config): what a plugin whose
// model is not a DecoderLM (tinymoe, deepseek_v2) hands the host; nn::DecoderFamily is one for DecoderLMs.
class FactoryFamily : public ModelFamily {
 public:
  using Factory = std::function<std::shared_ptr<MoECausalLM>(const ModelConfig&, const c10::Device&, c10::ScalarType)>;
  FactoryFamily(std::string name, std::vector<std::string> model_types, const ParamNaming& naming,
                std::shared_ptr<const ChatFormat> chat_format, Factory factory)
      : name_(std::move(name)),
        model_types_(std::move(model_types)),
        naming_(naming),
        chat_format_(std::move(chat_format)),
        factory_(std::move(factory)) {}

  std::string name() const override { return name_; }
  std::vector<std::string> model_types() const override { return model_types_; }
  const ParamNaming& naming() const override { return naming_; }
  const ChatFormat& chat_format() const override { return *chat_format_; }
  std::shared_ptr<MoECausalLM> create(const ModelConfig& config, const c10::Device& device,
                                      c10::ScalarType dtype) const override {
    return factory_(config, device, dtype);
  }

 private:
  std::string name_;
  std::vector<std::string> model_types_;
  const ParamNaming& naming_;
  std::shared_ptr<const ChatFormat> chat_format_;
  Factory factory_;
};

}  // namespace esft
