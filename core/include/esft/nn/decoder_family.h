#pragma once
// A ModelFamily whose models are DecoderLMs: a family plugin supplies its name, model types, config reader,
// naming table and chat format, and nothing else.
#include <string>
#include <vector>

#include "esft/model/model_family.h"
#include "esft/nn/decoder.h"

namespace esft::nn {

class DecoderFamily final : public ModelFamily {
 public:
  using SpecReader = DecoderSpec (*)(const ModelConfig&);
  DecoderFamily(std::string name, std::vector<std::string> model_types, SpecReader read_spec, const ParamNaming& naming,
                std::shared_ptr<const ChatFormat> chat_format)
      : name_(std::move(name)),
        model_types_(std::move(model_types)),
        read_spec_(read_spec),
        naming_(naming),
        chat_format_(std::move(chat_format)) {}

  std::string name() const override { return name_; }
  std::vector<std::string> model_types() const override { return model_types_; }
  const ParamNaming& naming() const override { return naming_; }
  const ChatFormat& chat_format() const override { return *chat_format_; }
  std::shared_ptr<MoECausalLM> create(const ModelConfig& config, const c10::Device& device,
                                      c10::ScalarType dtype) const override {
    return std::make_shared<DecoderLM>(config, read_spec_(config), naming_, device, dtype);
  }

 private:
  std::string name_;
  std::vector<std::string> model_types_;
  SpecReader read_spec_;
  const ParamNaming& naming_;
  std::shared_ptr<const ChatFormat> chat_format_;
};

}  // namespace esft::nn
