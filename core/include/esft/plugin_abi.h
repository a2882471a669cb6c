#pragma once
// The plugin ABI: each family plugin exports one C symbol, `esft_plugin_v1`, returning a pointer to a static
// EsftPluginInfo. C++ objects (tensors, vtables, shared_ptr) cross the boundary, so host and plugin must come from
// the same compiler family, C++ library ABI and LibTorch: the fingerprint records exactly that, and the host
// refuses a plugin whose ABI version or fingerprint differs from its own (naming both values).
#include <cstdint>
#include <memory>

#include "esft/compat.h"
#include "esft/version.h"

namespace esft {
class ModelFamily;
}

// Bump when EsftPluginInfo or any SDK interface that plugins implement changes incompatibly.
#define ESFT_PLUGIN_ABI_VERSION 2u

#if defined(__clang__)
#define ESFT_COMPILER_ID "clang " ESFT_STRINGIFY(__clang_major__)
#elif defined(__GNUC__)
#define ESFT_COMPILER_ID "gcc " ESFT_STRINGIFY(__GNUC__)
#else
#define ESFT_COMPILER_ID "unknown-compiler"
#endif

#ifdef _GLIBCXX_USE_CXX11_ABI
#define ESFT_CXX11_ABI ESFT_STRINGIFY(_GLIBCXX_USE_CXX11_ABI)
#else
#define ESFT_CXX11_ABI "n/a"
#endif

// Evaluated in each translation unit that uses it, so a plugin carries the values it was compiled with.
#define ESFT_BUILD_FINGERPRINT \
  "esft-sdk " ESFT_VERSION_STRING "; libtorch " ESFT_TORCH_VERSION_STRING "; cxx11abi " ESFT_CXX11_ABI "; " ESFT_COMPILER_ID

extern "C" {

struct EsftPluginInfo {
  uint32_t abi_version;           // ESFT_PLUGIN_ABI_VERSION at the plugin's build
  const char* build_fingerprint;  // ESFT_BUILD_FINGERPRINT at the plugin's build
  const char* name;               // "qwen3_moe"
  const char* version;            // the plugin's own version
  const char* const* model_types;  // config.json model_type values served, terminated by nullptr
  // Makes the family object. Called only after the host accepted abi_version and build_fingerprint.
  std::shared_ptr<esft::ModelFamily> (*create_family)();
};

typedef const EsftPluginInfo* (*EsftPluginEntry)();
}

#define ESFT_PLUGIN_ENTRY_NAME "esft_plugin_v1"

// Defines the entry point. Static builds (ESFT_STATIC_PLUGINS) compile several plugins into one binary, so there the
// symbol is `esft_plugin_v1_<id>`, collected by the host's generated table.
#if defined(ESFT_STATIC_PLUGIN_ID)
#define ESFT_PLUGIN_CONCAT_IMPL(a, b) a##b
#define ESFT_PLUGIN_CONCAT(a, b) ESFT_PLUGIN_CONCAT_IMPL(a, b)
#define ESFT_PLUGIN_ENTRY_POINT ESFT_PLUGIN_CONCAT(esft_plugin_v1_, ESFT_STATIC_PLUGIN_ID)
#else
#define ESFT_PLUGIN_ENTRY_POINT esft_plugin_v1
#endif

#define ESFT_DEFINE_PLUGIN(info_object)                                                            \
  extern "C" __attribute__((visibility("default"))) const EsftPluginInfo* ESFT_PLUGIN_ENTRY_POINT() noexcept { \
    return &(info_object);                                                                         \
  }
