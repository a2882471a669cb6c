# One precompiled header for every target: LibTorch's headers take 15-25 s to parse in each translation unit, and
# with clang (-fpch-instantiate-templates, CMake's default for clang) the templates they use are instantiated once
# in the header instead of in every unit. Every target therefore compiles with the same code model (-fPIC, set at
# the top level) and default visibility (plugins hide their symbols with a linker version script instead), which
# a shared precompiled header requires.
option(ESFT_PCH "Compile every target with one precompiled header of LibTorch's and the standard headers" ON)

# The owner: esft_core builds the header, every other target reuses it.
function(esft_precompile_headers_for_core target)
  if(ESFT_PCH)
    target_precompile_headers(${target} PRIVATE
      <ATen/ATen.h> <torch/nn/module.h> <nlohmann/json.hpp>
      <algorithm> <cstdint> <filesystem> <functional> <map> <memory> <optional> <set> <string> <string_view>
      <vector>)
  endif()
endfunction()

function(esft_reuse_precompiled_headers target)
  if(ESFT_PCH)
    target_precompile_headers(${target} REUSE_FROM esft_core)
  endif()
endfunction()
