// The entry point, the one symbol esft-host looks up in libesft_mixtral.so (esft/plugin_abi.h). The host first
// compares abi_version and build_fingerprint with its own, and refuses the plugin, naming both, when they differ;
// only then does it call make_family.
#include <iterator>
#include <string>
#include <vector>

#include "esft/nn/decoder_family.h"
#include "esft/plugin_abi.h"
#include "mixtral.h"

namespace {

// The config.json model_type values this plugin serves, listed once: the host reads them before loading, the
// family is built with them.
const char* const kModelTypes[] = {"mixtral", nullptr};

std::shared_ptr<esft::ModelFamily> make_family() {
  const std::vector<std::string> model_types(std::begin(kModelTypes), std::end(kModelTypes) - 1);
  return std::make_shared<esft::nn::DecoderFamily>("mixtral", model_types, &mixtral::decoder_spec, mixtral::naming(),
                                                  mixtral::chat_format());
}

const EsftPluginInfo kInfo = {ESFT_PLUGIN_ABI_VERSION, ESFT_BUILD_FINGERPRINT, "mixtral", "0.1.0", kModelTypes,
                              &make_family};

}  // namespace

ESFT_DEFINE_PLUGIN(kInfo)
