// The plugin's entry point: what esft-host reads from libesft_llama.so before anything else (esft/plugin_abi.h).
// The ABI version and build fingerprint are compiled in from the SDK's headers; the host refuses the plugin when
// either differs from its own.
#include <iterator>
#include <string>
#include <vector>

#include "esft/nn/decoder_family.h"
#include "esft/plugin_abi.h"
#include "llama.h"

namespace {

// The config.json model_type values this plugin serves, listed once: the host reads them before loading, the
// family is built with them.
const char* const kModelTypes[] = {"llama", nullptr};

std::shared_ptr<esft::ModelFamily> make_family() {
  const std::vector<std::string> model_types(std::begin(kModelTypes), std::end(kModelTypes) - 1);
  return std::make_shared<esft::nn::DecoderFamily>("llama", model_types, &llama::decoder_spec, llama::naming(),
                                                  llama::chat_format());
}

const EsftPluginInfo kInfo = {ESFT_PLUGIN_ABI_VERSION, ESFT_BUILD_FINGERPRINT, "llama", "0.1.0", kModelTypes,
                              &make_family};

}  // namespace

ESFT_DEFINE_PLUGIN(kInfo)
