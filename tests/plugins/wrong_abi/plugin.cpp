// A plugin that reports an ABI version no host supports: esft-host must refuse it and name both versions.
#include <memory>

#include "esft/plugin_abi.h"

namespace {
std::shared_ptr<esft::ModelFamily> make_nothing() { return nullptr; }
const char* const kModelTypes[] = {"wrong_abi_model", nullptr};
const EsftPluginInfo kInfo = {ESFT_PLUGIN_ABI_VERSION + 1000, ESFT_BUILD_FINGERPRINT, "wrong_abi", "0.0.1", kModelTypes,
                              &make_nothing};
}  // namespace

ESFT_DEFINE_PLUGIN(kInfo)
