// esft-fuzz-replay TARGET PATH...: runs every file under the PATHs (files or folders) through one fuzz target, as
// libFuzzer would, without libFuzzer: ctest replays the seed corpus and every saved crash this way in every build.
// `esft-fuzz-replay --list` names the targets. Exits 1 when no input was found (a replay of nothing proves nothing).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_target.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  const auto& targets = esft::fuzz::targets();
  if (argc >= 2 && std::string(argv[1]) == "--list") {
    for (const auto& [name, _] : targets) std::printf("%s\n", name.c_str());
    return 0;
  }
  if (argc < 3) {
    std::fprintf(stderr, "usage: esft-fuzz-replay TARGET PATH... | --list\n");
    return 2;
  }
  const auto target = targets.find(argv[1]);
  if (target == targets.end()) {
    std::fprintf(stderr, "esft-fuzz-replay: no target '%s' (see --list)\n", argv[1]);
    return 2;
  }
  std::vector<fs::path> inputs;
  for (int i = 2; i < argc; ++i) {
    const fs::path path = argv[i];
    if (fs::is_directory(path)) {
      for (const auto& entry : fs::recursive_directory_iterator(path))
        if (entry.is_regular_file()) inputs.push_back(entry.path());
    } else if (fs::is_regular_file(path)) {
      inputs.push_back(path);
    } else {
      std::fprintf(stderr, "esft-fuzz-replay: %s: no such file or folder\n", path.c_str());
      return 2;
    }
  }
  std::sort(inputs.begin(), inputs.end());
  if (inputs.empty()) {
    std::fprintf(stderr, "esft-fuzz-replay: no inputs for '%s'\n", argv[1]);
    return 1;
  }
  for (const auto& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    std::printf("%s: %s (%zu bytes)\n", argv[1], path.c_str(), bytes.str().size());
    std::fflush(stdout);  // a crash then names its input
    target->second(bytes.str());
  }
  std::printf("%s: replayed %zu inputs\n", argv[1], inputs.size());
  return 0;
}
