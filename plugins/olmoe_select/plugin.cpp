// The entry point of the olmoe_select plugin (OLMoE, and Select-MoE's OLMoE with trash-can experts), and nothing else.
#include <memory>

#include "esft/plugin_abi.h"

namespace olmoe {
std::shared_ptr<esft::ModelFamily> make_family();  // model.cpp
}

namespace {
const char* const kModelTypes[] = {"olmoe", "select_moe", nullptr};
const EsftPluginInfo kInfo = {ESFT_PLUGIN_ABI_VERSION, ESFT_BUILD_FINGERPRINT, "olmoe_select", ESFT_VERSION_STRING,
                              kModelTypes, &olmoe::make_family};
}  // namespace

ESFT_DEFINE_PLUGIN(kInfo)
