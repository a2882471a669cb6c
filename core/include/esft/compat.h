#pragma once
// The one place that knows which LibTorch it is compiled against. The CPU build uses Debian's LibTorch 1.13, the
// CUDA build the LibTorch inside a PyTorch 2.x wheel; code elsewhere asks these macros, never TORCH_VERSION_*.
#include <torch/version.h>

#define ESFT_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

#define ESFT_STRINGIFY_IMPL(x) #x
#define ESFT_STRINGIFY(x) ESFT_STRINGIFY_IMPL(x)

#define ESFT_TORCH_VERSION_STRING \
  ESFT_STRINGIFY(TORCH_VERSION_MAJOR) "." ESFT_STRINGIFY(TORCH_VERSION_MINOR) "." ESFT_STRINGIFY(TORCH_VERSION_PATCH)
