// The entry point, the one symbol esft-host looks up in libesft_mixtral.so (esft/plugin_abi.h). The host first
// compares abi_version and build_fingerprint with its own, and refuses the plugin, naming both, when they differ;
// only then does it call make_family.
#include "esft/nn/decoder_family.h"
#include "esft/plugin_abi.h"
#include "mixtral.h"

namespace {

std::shared_ptr<esft::ModelFamily> make_family() {
  return std::make_shared<esft::nn::DecoderFamily>("mixtral", std::vector<std::string>{"mixtral"},
                                                  &mixtral::decoder_spec, mixtral::naming(), mixtral::chat_format());
}

const char* const kModelTypes[] = {"mixtral", nullptr};  // config.json model_type values this plugin serves
const EsftPluginInfo kInfo = {ESFT_PLUGIN_ABI_VERSION, ESFT_BUILD_FINGERPRINT, "mixtral", "0.1.0", kModelTypes,
                              &make_family};

}  // namespace

ESFT_DEFINE_PLUGIN(kInfo)
