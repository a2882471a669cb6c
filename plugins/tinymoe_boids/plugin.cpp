// The entry point of the tinymoe_boids plugin, and nothing else.
#include <memory>

#include "esft/plugin_abi.h"

namespace tinymoe {
std::shared_ptr<esft::ModelFamily> make_family();  // model.cpp
}

namespace {
const char* const kModelTypes[] = {"tinymoe", nullptr};
const EsftPluginInfo kInfo = {ESFT_PLUGIN_ABI_VERSION, ESFT_BUILD_FINGERPRINT, "tinymoe_boids", ESFT_VERSION_STRING,
                              kModelTypes, &tinymoe::make_family};
}  // namespace

ESFT_DEFINE_PLUGIN(kInfo)
