// The entry point of the qwen2_moe plugin, and nothing else.
#include <memory>

#include "esft/plugin_abi.h"

namespace qwen2_moe {
std::shared_ptr<esft::ModelFamily> make_family();  // model.cpp
}

namespace {
const char* const kModelTypes[] = {"qwen2_moe", nullptr};
const EsftPluginInfo kInfo = {ESFT_PLUGIN_ABI_VERSION, ESFT_BUILD_FINGERPRINT, "qwen2_moe", ESFT_VERSION_STRING,
                              kModelTypes, &qwen2_moe::make_family};
}  // namespace

ESFT_DEFINE_PLUGIN(kInfo)
