# One precompiled header for every target: LibTorch's headers take 15-25 s to parse in each translation unit, and
# with clang (-fpch-instantiate-templates, CMake's default for clang) the templates they use are instantiated once
# in the header instead of in every unit.
#
# A precompiled header serves only units compiled like the one that made it. So every target compiles with the same
# code model (-fPIC, set at the top level) and default visibility (plugins hide their symbols with a linker version
# script instead), and the header belongs to esft_pch, an empty unit with nothing but LibTorch's and nlohmann/json's
# usage requirements: g++ refuses a header made with a macro that the unit using it lacks (esft_core_EXPORTS, say),
# while a unit may add macros of its own.
option(ESFT_PCH "Compile every target with one precompiled header of LibTorch's and the standard headers" ON)

if(ESFT_PCH)
  add_library(esft_pch OBJECT ${CMAKE_CURRENT_LIST_DIR}/precompiled.cpp)
  target_link_libraries(esft_pch PRIVATE esft::torch nlohmann_json::nlohmann_json)
  target_precompile_headers(esft_pch PRIVATE
    <ATen/ATen.h> <torch/nn/module.h> <nlohmann/json.hpp>
    <algorithm> <cstdint> <filesystem> <functional> <map> <memory> <optional> <set> <string> <string_view>
    <vector>)
endif()

function(esft_reuse_precompiled_headers target)
  if(ESFT_PCH)
    target_precompile_headers(${target} REUSE_FROM esft_pch)
  endif()
endfunction()
