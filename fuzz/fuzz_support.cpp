#include "fuzz_target.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>

#include "esft/error.h"
#include "esft/tokenizer/utf8.h"

namespace esft::fuzz {

namespace fs = std::filesystem;

std::map<std::string, Target>& targets() {
  static std::map<std::string, Target> table;
  return table;
}

namespace {
[[noreturn]] void fail(const char* what, const std::string& message) {
  std::fprintf(stderr, "esft fuzz: %s: %s\n", what, message.c_str());
  std::abort();
}
}  // namespace

void expect_only_clean_errors(const std::function<void()>& body) {
  try {
    body();
  } catch (const esft::Error& e) {
    const std::string_view what = e.what();
    if (!tok::is_valid_utf8(what)) fail("esft::Error message is not valid UTF-8", std::string(what));
    if (what.find_first_of("\n\r") != std::string_view::npos) fail("esft::Error message spans lines", std::string(what));
    if (what.empty()) fail("esft::Error without a message", "");
  } catch (const std::exception& e) {
    fail("an exception other than esft::Error escaped", e.what());
  } catch (...) {
    fail("a non-standard exception escaped", "");
  }
}

const fs::path& scratch_dir() {
  static const fs::path dir = [] {
    const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    fs::path d = base / ("esft-fuzz-" + std::to_string(::getpid()));
    fs::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(scratch_dir(), ec);
    });
    return d;
  }();
  return dir;
}

fs::path write_scratch_file(const fs::path& relative, std::string_view data) {
  const fs::path path = scratch_dir() / relative;
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!out) fail("cannot write the scratch file", path.string());
  return path;
}

std::vector<std::string_view> split_parts(std::string_view data, size_t parts) {
  static constexpr std::string_view kSeparator = "\n--esft-fuzz-part--\n";
  std::vector<std::string_view> out;
  while (out.size() + 1 < parts) {
    const size_t at = data.find(kSeparator);
    if (at == std::string_view::npos) break;
    out.push_back(data.substr(0, at));
    data.remove_prefix(at + kSeparator.size());
  }
  out.push_back(data);
  out.resize(parts);
  return out;
}

fs::path source_dir() { return ESFT_SOURCE_DIR; }

}  // namespace esft::fuzz
