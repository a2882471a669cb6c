// The entry point of the deepseek_v2 plugin, and nothing else.
#include <memory>

#include "esft/plugin_abi.h"

namespace deepseek_v2 {
std::shared_ptr<esft::ModelFamily> make_family();  // model.cpp
}

namespace {
const char* const kModelTypes[] = {"deepseek_v2", nullptr};
const EsftPluginInfo kInfo = {ESFT_PLUGIN_ABI_VERSION, ESFT_BUILD_FINGERPRINT, "deepseek_v2", ESFT_VERSION_STRING,
                              kModelTypes, &deepseek_v2::make_family};
}  // namespace

ESFT_DEFINE_PLUGIN(kInfo)
