# esft_add_plugin(<name> SOURCES <files...>)
# Builds libesft_<name>.so next to esft-host, exporting only the entry point `esft_plugin_v1` (a linker version
# script, cmake/plugin_exports.map: a plugin's own symbols never shadow another's). With ESFT_STATIC_PLUGINS the same
# sources become an object library linked into the host; the entry point is then renamed `esft_plugin_v1_<name>`
# (see esft/plugin_abi.h) and listed in a generated table.
set_property(GLOBAL PROPERTY ESFT_STATIC_PLUGIN_NAMES "")
set_property(GLOBAL PROPERTY ESFT_PLUGIN_TARGETS "")

function(esft_add_plugin name)
  cmake_parse_arguments(ARG "" "" "SOURCES" ${ARGN})
  if(ESFT_STATIC_PLUGINS)
    set(target esft_plugin_${name})
    add_library(${target} OBJECT ${ARG_SOURCES})
    target_compile_definitions(${target} PRIVATE ESFT_STATIC_PLUGIN_ID=${name})
    set_property(GLOBAL APPEND PROPERTY ESFT_STATIC_PLUGIN_NAMES ${name})
  else()
    set(target esft_${name})
    add_library(${target} MODULE ${ARG_SOURCES})
    set_target_properties(${target} PROPERTIES PREFIX "lib" BUILD_RPATH "$ORIGIN" INSTALL_RPATH "$ORIGIN/../..;${ESFT_TORCH_LIB_DIR}")
    esft_export_only_plugin_entry(${target})
    install(TARGETS ${target} LIBRARY DESTINATION ${ESFT_PLUGIN_INSTALL_DIR})
    set_property(GLOBAL APPEND PROPERTY ESFT_PLUGIN_TARGETS ${target})
  endif()
  target_link_libraries(${target} PRIVATE esft_core)
  esft_reuse_precompiled_headers(${target})
endfunction()

# A plugin library's dynamic symbol table holds `esft_plugin_v1` and nothing else.
function(esft_export_only_plugin_entry target)
  target_link_options(${target} PRIVATE "-Wl,--version-script=${PROJECT_SOURCE_DIR}/cmake/plugin_exports.map")
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS ${PROJECT_SOURCE_DIR}/cmake/plugin_exports.map)
endfunction()
