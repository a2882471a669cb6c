#pragma once
// The one place that knows which LibTorch esft is compiled against: the one inside the PyTorch 2.x wheel of the
// project's .venv (or of a GPU machine's own Python). Code elsewhere uses these macros, never TORCH_VERSION_*.
#include <torch/version.h>

#if TORCH_VERSION_MAJOR < 2
#error "esft needs LibTorch 2.x (the PyTorch wheel that scripts/install-deps.sh installs into .venv)"
#endif

#define ESFT_STRINGIFY_IMPL(x) #x
#define ESFT_STRINGIFY(x) ESFT_STRINGIFY_IMPL(x)

#define ESFT_TORCH_VERSION_STRING \
  ESFT_STRINGIFY(TORCH_VERSION_MAJOR) "." ESFT_STRINGIFY(TORCH_VERSION_MINOR) "." ESFT_STRINGIFY(TORCH_VERSION_PATCH)
