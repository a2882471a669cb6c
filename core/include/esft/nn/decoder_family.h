#pragma once
// A ModelFamily whose models are DecoderLMs: a family plugin supplies its name, model types, config reader,
// naming table and chat format, and nothing else.
#include <string>
#include <vector>

#include "esft/model/model_family.h"
#include "esft/nn/decoder.h"

namespace esft::nn {

class DecoderFamily final : public FactoryFamily {
 public:
  using SpecReader = DecoderSpec (*)(const ModelConfig&);
  DecoderFamily(std::string name, std::vector<std::string> model_types, SpecReader read_spec, const ParamNaming& naming,
                std::shared_ptr<const ChatFormat> chat_format)
      : FactoryFamily(std::move(name), std::move(model_types), naming, std::move(chat_format),
                      [read_spec, &naming](const ModelConfig& config, const c10::Device& device, c10::ScalarType dtype) {
                        return std::make_shared<DecoderLM>(config, read_spec(config), naming, device, dtype);
                      }) {}
};

}  // namespace esft::nn
