// The plugin's entry point: what esft-host reads from libesft_llama.so before anything else (esft/plugin_abi.h).
// The ABI version and build fingerprint are compiled in from the SDK's headers; the host refuses the plugin when
// either differs from its own.
#include "esft/nn/decoder_family.h"
#include "esft/plugin_abi.h"
#include "llama.h"

namespace {

std::shared_ptr<esft::ModelFamily> make_family() {
  return std::make_shared<esft::nn::DecoderFamily>("llama", std::vector<std::string>{"llama"}, &llama::decoder_spec,
                                                  llama::naming(), llama::chat_format());
}

const char* const kModelTypes[] = {"llama", nullptr};
const EsftPluginInfo kInfo = {ESFT_PLUGIN_ABI_VERSION, ESFT_BUILD_FINGERPRINT, "llama", "0.1.0", kModelTypes,
                              &make_family};

}  // namespace

ESFT_DEFINE_PLUGIN(kInfo)
