// How esft's binaries are linked against the PyTorch wheel's LibTorch (CMakeLists.txt, cmake/EsftTorch.cmake).
#include <dlfcn.h>

#include <filesystem>
#include <string>

#include "doctest_torch.h"
#include "esft/compat.h"

namespace {
std::string library_of(const void* address) {
  Dl_info info{};
  return dladdr(address, &info) && info.dli_fname ? info.dli_fname : "(unknown)";
}
}  // namespace

TEST_CASE("toolchain: std::filesystem resolves to libstdc++, not to the copy the PyTorch wheel exports") {
  // libtorch and libtorch_cpu export parts of std::filesystem; bound to those, remove_all jumps to address 0 and
  // filesystem_error mixes two implementations. libstdc++ must come first in every binary's library list.
  using RemoveAll = std::uintmax_t (*)(const std::filesystem::path&);
  const auto remove_all = static_cast<RemoveAll>(&std::filesystem::remove_all);
  const std::string library = library_of(reinterpret_cast<const void*>(remove_all));
  INFO("std::filesystem::remove_all comes from ", library);
  CHECK(library.find("libstdc++") != std::string::npos);
}

TEST_CASE("toolchain: LibTorch is 2.x") { CHECK(std::string(ESFT_TORCH_VERSION_STRING).rfind("2.", 0) == 0); }
