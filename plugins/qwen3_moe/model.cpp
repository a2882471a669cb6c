#include "esft/model_family.h"
#include "qwen3_moe.h"

namespace qwen3_moe {

class Family final : public esft::ModelFamily {
 public:
  std::string name() const override { return "qwen3_moe"; }
  std::vector<std::string> model_types() const override { return {"qwen3_moe"}; }
  const esft::ParamNaming& naming() const override { return qwen3_moe::naming(); }
  std::shared_ptr<esft::MoECausalLM> create(const esft::ModelConfig& config, const c10::Device& device,
                                            c10::ScalarType dtype) const override {
    return std::make_shared<esft::nn::DecoderLM>(config, decoder_spec(config), naming(), device, dtype);
  }
};

std::shared_ptr<esft::ModelFamily> make_family() { return std::make_shared<Family>(); }

}  // namespace qwen3_moe
