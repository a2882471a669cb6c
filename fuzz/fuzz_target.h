#pragma once
// A fuzz target feeds bytes to one parser of user files; it is declared with ESFT_FUZZ_TARGET(name) in
// fuzz/targets/<name>.cpp. With -DESFT_FUZZ=ON (clang 14, libFuzzer, AddressSanitizer, UBSan; scripts/fuzz.sh)
// each target becomes its own program `esft-fuzz-<name>`. In every build all targets are also linked into
// `esft-fuzz-replay`, which ctest runs over the committed seed corpus (fuzz/corpus/<name>/) and over every input
// that ever made a target fail (fuzz/regressions/<name>/), so a fixed crash stays fixed.
//
// What every target asserts: bad input ends in esft::Error whose message is one line of valid UTF-8 (use
// expect_only_clean_errors). Any other exception, a crash or a sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace esft::fuzz {

using Target = void (*)(std::string_view data);

// The targets linked into this program (one under libFuzzer, all of them in esft-fuzz-replay).
std::map<std::string, Target>& targets();
struct Registration {
  Registration(const char* name, Target target) { targets()[name] = target; }
};

// Runs `body`. An esft::Error is the expected answer to bad input, and its message must be one line of valid
// UTF-8; anything else thrown (or such a message) aborts with a description, and libFuzzer keeps the input.
void expect_only_clean_errors(const std::function<void()>& body);

// This process's scratch folder (under /dev/shm when there is one: the targets write their input to a file, as
// users hand esft files), and a file in it holding `data`.
const std::filesystem::path& scratch_dir();
std::filesystem::path write_scratch_file(const std::filesystem::path& relative, std::string_view data);

// Targets that read several files take one input split at the first (parts - 1) occurrences of
// "\n--esft-fuzz-part--\n"; missing parts are empty.
std::vector<std::string_view> split_parts(std::string_view data, size_t parts);

// The bundled files targets build on: the project's source tree and its tiny test model.
std::filesystem::path source_dir();

}  // namespace esft::fuzz

#define ESFT_FUZZ_CONCAT_IMPL(a, b) a##b
#define ESFT_FUZZ_CONCAT(a, b) ESFT_FUZZ_CONCAT_IMPL(a, b)

#ifdef ESFT_FUZZ_LIBFUZZER
// One target per program: libFuzzer's entry point calls it.
#define ESFT_FUZZ_TARGET(name)                                                              \
  static void ESFT_FUZZ_CONCAT(esft_fuzz_, name)(std::string_view data);                    \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {               \
    ESFT_FUZZ_CONCAT(esft_fuzz_, name)(std::string_view(reinterpret_cast<const char*>(bytes), size)); \
    return 0;                                                                               \
  }                                                                                         \
  static void ESFT_FUZZ_CONCAT(esft_fuzz_, name)(std::string_view data)
#else
// Many targets per program: each registers itself by name.
#define ESFT_FUZZ_TARGET(name)                                                              \
  static void ESFT_FUZZ_CONCAT(esft_fuzz_, name)(std::string_view data);                    \
  static const ::esft::fuzz::Registration ESFT_FUZZ_CONCAT(esft_fuzz_registration_, name)(  \
      #name, ESFT_FUZZ_CONCAT(esft_fuzz_, name));                                           \
  static void ESFT_FUZZ_CONCAT(esft_fuzz_, name)(std::string_view data)
#endif
