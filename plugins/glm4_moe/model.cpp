#include "esft/nn/decoder_family.h"
#include "glm4_moe.h"

namespace glm4_moe {

std::shared_ptr<esft::ModelFamily> make_family() {
  return std::make_shared<esft::nn::DecoderFamily>("glm4_moe", std::vector<std::string>{"glm4_moe"}, &decoder_spec, naming(),
                                                  chat_format());
}

}  // namespace glm4_moe
