# LibTorch for every build: the one inside the PyTorch wheel of ESFT_PYTHON (by default the project's .venv, made
# by scripts/install-deps.sh; on a GPU machine, that machine's own python3). Defines the target esft::torch and
#   ESFT_TORCH_VERSION   the wheel's version ("2.11.0+cu130")
#   ESFT_CUDA            ON when the CUDA path is compiled in: the wheel has CUDA and this machine has the toolkit
#   ESFT_CUDA_VERSION    the wheel's CUDA version ("13.0"), empty for a CPU-only wheel
#
# With ESFT_CUDA, find_package(Torch) links libtorch_cuda (it needs the CUDA toolkit, nvcc included). Without it,
# esft links the wheel's CPU libraries only (libtorch_cpu, libc10): a build that never loads the CUDA libraries, for
# machines without the toolkit or a deliberate -DESFT_CUDA=OFF.
set(ESFT_PYTHON "${PROJECT_SOURCE_DIR}/.venv/bin/python" CACHE FILEPATH
    "Python whose PyTorch wheel provides LibTorch (default: the project's .venv from scripts/install-deps.sh)")

execute_process(
  COMMAND "${ESFT_PYTHON}" -c
          "import torch, torch.utils; print(torch.utils.cmake_prefix_path); print(torch.__version__); print(int(torch.compiled_with_cxx11_abi())); print(torch.version.cuda or '')"
  OUTPUT_VARIABLE torch_query ERROR_VARIABLE torch_query_error RESULT_VARIABLE torch_query_result
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT torch_query_result EQUAL 0)
  message(FATAL_ERROR "esft: no PyTorch found through ESFT_PYTHON=${ESFT_PYTHON}.\n"
                      "Run scripts/install-deps.sh (it makes .venv with the pinned PyTorch wheel), or pass "
                      "-DESFT_PYTHON=/path/to/python of an environment that has torch.\n${torch_query_error}")
endif()
string(REPLACE "\n" ";" torch_query "${torch_query}")
list(GET torch_query 0 torch_cmake_prefix)
list(GET torch_query 1 ESFT_TORCH_VERSION)
list(GET torch_query 2 torch_cxx11_abi)
list(LENGTH torch_query torch_query_length)
set(ESFT_CUDA_VERSION "")
if(torch_query_length GREATER 3)
  list(GET torch_query 3 ESFT_CUDA_VERSION)
endif()
if(ESFT_TORCH_VERSION VERSION_LESS 2.0)
  message(FATAL_ERROR "esft: PyTorch ${ESFT_TORCH_VERSION} is too old; esft needs 2.x (see scripts/install-deps.sh)")
endif()

include(CheckLanguage)
check_language(CUDA)
set(cuda_default OFF)
if(CMAKE_CUDA_COMPILER AND NOT ESFT_CUDA_VERSION STREQUAL "")
  set(cuda_default ON)
endif()
option(ESFT_CUDA "Compile the CUDA path (default: ON when the wheel has CUDA and nvcc is found)" ${cuda_default})
if(ESFT_CUDA AND ESFT_CUDA_VERSION STREQUAL "")
  message(FATAL_ERROR "esft: ESFT_CUDA=ON, but PyTorch ${ESFT_TORCH_VERSION} of ${ESFT_PYTHON} is a CPU-only wheel")
endif()
if(ESFT_CUDA AND NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR "esft: ESFT_CUDA=ON, but no CUDA compiler (nvcc) was found; install the CUDA toolkit "
                      "${ESFT_CUDA_VERSION} or configure with -DESFT_CUDA=OFF")
endif()

# The wheel's lib folder: installed binaries keep it on their run path (INSTALL_RPATH), as the build tree's do.
get_filename_component(ESFT_TORCH_LIB_DIR "${torch_cmake_prefix}/../../lib" ABSOLUTE)

add_library(esft_torch INTERFACE)
add_library(esft::torch ALIAS esft_torch)
if(ESFT_CUDA)
  # Hopper (H100/H200) by default; PyTorch's CMake reads TORCH_CUDA_ARCH_LIST, not CMAKE_CUDA_ARCHITECTURES.
  if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
    set(TORCH_CUDA_ARCH_LIST "9.0")
  endif()
  list(APPEND CMAKE_PREFIX_PATH "${torch_cmake_prefix}")
  # TorchConfig finds its libraries with find_library(... PATHS <wheel>/lib), which looks in the system folders
  # first: another LibTorch there (Debian's libtorch-dev) would be linked in its place. Name the wheel's own.
  get_filename_component(torch_lib "${torch_cmake_prefix}/../../lib" ABSOLUTE)
  set(TORCH_LIBRARY "${torch_lib}/libtorch.so" CACHE FILEPATH "LibTorch of the PyTorch wheel" FORCE)
  set(c10_LIBRARY "${torch_lib}/libc10.so" CACHE FILEPATH "c10 of the PyTorch wheel" FORCE)
  set(C10_CUDA_LIBRARY "${torch_lib}/libc10_cuda.so" CACHE FILEPATH "c10_cuda of the PyTorch wheel" FORCE)
  # Kineto (the profiler) is linked into libtorch_cpu in the wheels; without this TorchConfig warns it is missing.
  set(kineto_LIBRARY "${torch_lib}/libtorch_cpu.so" CACHE FILEPATH "libtorch_cpu, which holds Kineto" FORCE)
  # PyTorch's CMake enables CUDA itself and warns when CMAKE_CUDA_ARCHITECTURES is set, which CMake's policy
  # CMP0104 does on enabling the language; it reads TORCH_CUDA_ARCH_LIST instead.
  cmake_policy(PUSH)
  cmake_policy(SET CMP0104 OLD)
  unset(CMAKE_CUDA_ARCHITECTURES CACHE)
  unset(CMAKE_CUDA_ARCHITECTURES)
  find_package(Torch REQUIRED)
  cmake_policy(POP)
  target_link_libraries(esft_torch INTERFACE ${TORCH_LIBRARIES})
  target_compile_definitions(esft_torch INTERFACE ESFT_WITH_CUDA=1)
else()
  # The wheel's CPU half, without TorchConfig (which insists on the CUDA toolkit for a CUDA wheel).
  get_filename_component(torch_root "${torch_cmake_prefix}/../.." ABSOLUTE)
  foreach(lib torch_cpu c10)
    set(path "${torch_root}/lib/lib${lib}.so")
    if(NOT EXISTS "${path}")
      message(FATAL_ERROR "esft: ${path} not found in the PyTorch wheel of ${ESFT_PYTHON}")
    endif()
    target_link_libraries(esft_torch INTERFACE "${path}")
  endforeach()
  target_include_directories(esft_torch SYSTEM INTERFACE "${torch_root}/include"
                                                         "${torch_root}/include/torch/csrc/api/include")
  target_compile_definitions(esft_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=${torch_cxx11_abi})
endif()
message(STATUS "esft: PyTorch ${ESFT_TORCH_VERSION} from ${ESFT_PYTHON}; CUDA path: ${ESFT_CUDA}")
