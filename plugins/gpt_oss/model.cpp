#include "esft/nn/decoder_family.h"
#include "gpt_oss.h"

namespace gpt_oss {

std::shared_ptr<esft::ModelFamily> make_family() {
  return std::make_shared<esft::nn::DecoderFamily>("gpt_oss", std::vector<std::string>{"gpt_oss"}, &decoder_spec, naming(),
                                                  chat_format());
}

}  // namespace gpt_oss
