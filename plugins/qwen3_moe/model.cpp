#include "esft/nn/decoder_family.h"
#include "qwen3_moe.h"

namespace qwen3_moe {

std::shared_ptr<esft::ModelFamily> make_family() {
  return std::make_shared<esft::nn::DecoderFamily>("qwen3_moe", std::vector<std::string>{"qwen3_moe"}, &decoder_spec, naming(),
                                                  chat_format());
}

}  // namespace qwen3_moe
