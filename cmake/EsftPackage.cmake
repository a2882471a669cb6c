# The SDK that `cmake --install` puts beside esft-host, so family plugins can be built in their own repositories
# (examples/plugin-template, examples/plugin-llama): the headers a plugin needs (ESFT_SDK_HEADERS, core/), the core
# library and esft-host as the imported targets esft::core and esft::host, the plugin CMake function, and the
# LibTorch and compiler esft was built with, which the package checks a plugin project against
# (cmake/esftConfig.cmake.in).
include(CMakePackageConfigHelpers)
set(ESFT_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/esft)

get_filename_component(ESFT_TORCH_ROOT "${ESFT_TORCH_LIB_DIR}/.." ABSOLUTE)
set(ESFT_TORCH_CXX11_ABI ${torch_cxx11_abi})
string(REGEX MATCH "^[0-9]+" ESFT_CXX_COMPILER_MAJOR "${CMAKE_CXX_COMPILER_VERSION}")

install(EXPORT esftTargets NAMESPACE esft:: DESTINATION ${ESFT_CMAKE_INSTALL_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/esftConfig.cmake.in ${CMAKE_BINARY_DIR}/esftConfig.cmake
  INSTALL_DESTINATION ${ESFT_CMAKE_INSTALL_DIR} PATH_VARS ESFT_PLUGIN_INSTALL_DIR)
# Before 1.0 every minor version may change the plugin interfaces: only the same minor version is compatible.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/esftConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/esftConfig.cmake ${CMAKE_BINARY_DIR}/esftConfigVersion.cmake
              ${CMAKE_CURRENT_LIST_DIR}/EsftPluginLibrary.cmake ${CMAKE_CURRENT_LIST_DIR}/plugin_exports.map
        DESTINATION ${ESFT_CMAKE_INSTALL_DIR})
# The fixture maker, so a plugin author can make transformers references from the installed tree (it needs a Python
# with transformers: esft's .venv).
install(PROGRAMS ${PROJECT_SOURCE_DIR}/scripts/make-fixtures.py DESTINATION ${CMAKE_INSTALL_DATADIR}/esft)
