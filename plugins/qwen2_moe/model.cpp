#include "esft/nn/decoder_family.h"
#include "qwen2_moe.h"

namespace qwen2_moe {

std::shared_ptr<esft::ModelFamily> make_family() {
  return std::make_shared<esft::nn::DecoderFamily>("qwen2_moe", std::vector<std::string>{"qwen2_moe"}, &decoder_spec, naming(),
                                                  chat_format());
}

}  // namespace qwen2_moe
