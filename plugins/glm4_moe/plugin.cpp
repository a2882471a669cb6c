// The entry point of the glm4_moe plugin, and nothing else.
#include <memory>

#include "esft/plugin_abi.h"

namespace glm4_moe {
std::shared_ptr<esft::ModelFamily> make_family();  // model.cpp
}

namespace {
const char* const kModelTypes[] = {"glm4_moe", nullptr};
const EsftPluginInfo kInfo = {ESFT_PLUGIN_ABI_VERSION, ESFT_BUILD_FINGERPRINT, "glm4_moe", ESFT_VERSION_STRING,
                              kModelTypes, &glm4_moe::make_family};
}  // namespace

ESFT_DEFINE_PLUGIN(kInfo)
