# esft_add_plugin(<name> SOURCES <files...>) for the plugins in esft's own tree (plugins/): libesft_<name>.so next
# to esft-host, installed into lib/esft/plugins. (Plugins built against the installed SDK get their own
# esft_add_plugin from the CMake package, cmake/esftConfig.cmake.in; both make the library with
# esft_plugin_library.) With ESFT_STATIC_PLUGINS the same sources become an object library linked into the host;
# the entry point is then renamed `esft_plugin_v1_<name>` (see esft/plugin_abi.h) and listed in a generated table.
include(${CMAKE_CURRENT_LIST_DIR}/EsftPluginLibrary.cmake)
set_property(GLOBAL PROPERTY ESFT_STATIC_PLUGIN_NAMES "")
set_property(GLOBAL PROPERTY ESFT_PLUGIN_TARGETS "")

function(esft_add_plugin name)
  cmake_parse_arguments(ARG "" "" "SOURCES" ${ARGN})
  if(ESFT_STATIC_PLUGINS)
    set(target esft_plugin_${name})
    add_library(${target} OBJECT ${ARG_SOURCES})
    target_compile_definitions(${target} PRIVATE ESFT_STATIC_PLUGIN_ID=${name})
    target_link_libraries(${target} PRIVATE esft::core)
    set_property(GLOBAL APPEND PROPERTY ESFT_STATIC_PLUGIN_NAMES ${name})
  else()
    set(target esft_${name})
    add_library(${target} MODULE ${ARG_SOURCES})
    esft_plugin_library(${target})
    set_target_properties(${target} PROPERTIES BUILD_RPATH "$ORIGIN" INSTALL_RPATH "$ORIGIN/../..;${ESFT_TORCH_LIB_DIR}")
    install(TARGETS ${target} LIBRARY DESTINATION ${ESFT_PLUGIN_INSTALL_DIR})
    set_property(GLOBAL APPEND PROPERTY ESFT_PLUGIN_TARGETS ${target})
  endif()
  esft_reuse_precompiled_headers(${target})
endfunction()
