# esft_add_plugin(<name> SOURCES <files...>)
# Builds libesft_<name>.so next to esft-host: hidden visibility, so the only exported symbol is the entry point
# `esft_plugin_v1`. With ESFT_STATIC_PLUGINS the same sources become an object library linked into the host; the
# entry point is then renamed `esft_plugin_v1_<name>` (see esft/plugin_abi.h) and listed in a generated table.
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
    set_target_properties(${target} PROPERTIES PREFIX "lib" BUILD_RPATH "$ORIGIN" INSTALL_RPATH "$ORIGIN/../..")
    install(TARGETS ${target} LIBRARY DESTINATION ${ESFT_PLUGIN_INSTALL_DIR})
    set_property(GLOBAL APPEND PROPERTY ESFT_PLUGIN_TARGETS ${target})
  endif()
  set_target_properties(${target} PROPERTIES CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  target_link_libraries(${target} PRIVATE esft_core)
endfunction()
