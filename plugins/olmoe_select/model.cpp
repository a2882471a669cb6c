#include "esft/nn/decoder_family.h"
#include "olmoe.h"

namespace olmoe {

std::shared_ptr<esft::ModelFamily> make_family() {
  return std::make_shared<esft::nn::DecoderFamily>("olmoe_select", std::vector<std::string>{"olmoe", "select_moe"}, &decoder_spec, naming(),
                                                  chat_format());
}

}  // namespace olmoe
