// The entry point of the gpt_oss plugin, and nothing else.
#include <memory>

#include "esft/plugin_abi.h"

namespace gpt_oss {
std::shared_ptr<esft::ModelFamily> make_family();  // model.cpp
}

namespace {
const char* const kModelTypes[] = {"gpt_oss", nullptr};
const EsftPluginInfo kInfo = {ESFT_PLUGIN_ABI_VERSION, ESFT_BUILD_FINGERPRINT, "gpt_oss", ESFT_VERSION_STRING,
                              kModelTypes, &gpt_oss::make_family};
}  // namespace

ESFT_DEFINE_PLUGIN(kInfo)
