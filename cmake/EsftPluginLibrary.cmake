# esft_plugin_library(<target>): makes the MODULE library <target> a family plugin, the same way in esft's own tree
# and in a plugin author's project built against the installed SDK (this file is installed with the CMake package):
# named libesft_<name>.so, linked to esft::core, exporting only the entry point `esft_plugin_v1` (a linker version
# script: a plugin's own symbols never shadow another's).
function(esft_plugin_library target)
  string(REGEX REPLACE "^esft_" "" name "${target}")
  set_target_properties(${target} PROPERTIES PREFIX "lib" OUTPUT_NAME esft_${name})
  target_link_libraries(${target} PRIVATE esft::core)
  esft_export_only_plugin_entry(${target})
endfunction()

# A library's dynamic symbol table holds `esft_plugin_v1` and nothing else.
function(esft_export_only_plugin_entry target)
  set(map "${_ESFT_PLUGIN_LIBRARY_DIR}/plugin_exports.map")
  target_link_options(${target} PRIVATE "-Wl,--version-script=${map}")
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS "${map}")
endfunction()

set(_ESFT_PLUGIN_LIBRARY_DIR "${CMAKE_CURRENT_LIST_DIR}")
