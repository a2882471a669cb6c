#include "esft/io/atomic_file.h"

#include "esft/error.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace esft {
namespace fs = std::filesystem;

namespace {

std::atomic<unsigned long> g_temp_counter{0};

// Empty when `dir` exists, is a directory and is writable; otherwise why not.
std::string directory_problem(const fs::path& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return std::strerror(errno);
  if (!S_ISDIR(st.st_mode)) return std::strerror(ENOTDIR);
  if (::access(dir.c_str(), W_OK | X_OK) != 0) return std::strerror(errno);
  return {};
}

}  // namespace

AtomicFile::AtomicFile(fs::path path) : path_(std::move(path)) {
  fs::path dir = path_.parent_path();
  if (dir.empty()) dir = ".";
  if (path_.filename().empty()) throw Error("cannot write " + path_.string() + ": not a file name");
  const std::string problem = directory_problem(dir);
  if (!problem.empty()) throw Error("cannot write " + dir.string() + ": " + problem);

  temp_ = dir / ("." + path_.filename().string() + ".tmp." + std::to_string(::getpid()) + "." +
                 std::to_string(g_temp_counter.fetch_add(1)));
  errno = 0;
  out_.open(temp_, std::ios::out | std::ios::binary | std::ios::trunc);
  if (!out_.is_open()) {
    const int err = errno;
    throw Error("cannot write " + temp_.string() + ": " + (err ? std::strerror(err) : "open failed"));
  }
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  if (out_.is_open()) out_.close();
  std::error_code ec;
  fs::remove(temp_, ec);  // best effort: never throw from a destructor
}

void AtomicFile::commit() {
  if (committed_) throw Error("internal: AtomicFile for " + path_.string() + " committed twice");
  errno = 0;
  out_.flush();
  out_.close();
  if (out_.fail()) {
    const int err = errno;
    std::error_code ec;
    fs::remove(temp_, ec);
    committed_ = true;  // nothing left to clean up
    throw Error("error writing " + path_.string() + ": " + (err ? std::strerror(err) : "I/O failure"));
  }
  std::error_code ec;
  fs::rename(temp_, path_, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(temp_, ignored);
    committed_ = true;
    throw Error("cannot rename " + temp_.string() + " to " + path_.string() + ": " + ec.message());
  }
  committed_ = true;
}

void write_text_atomically(const fs::path& path, const std::string& text) {
  AtomicFile file(path);
  file.stream().write(text.data(), static_cast<std::streamsize>(text.size()));
  file.commit();
}

AtomicDirectory::AtomicDirectory(fs::path final_dir) : final_(std::move(final_dir)) {
  const std::string stem = final_.filename().string() + ".partial-" + std::to_string(::getpid());
  std::error_code ec;
  // Another folder of that name (left by a killed run whose pid came round again) is never ours to delete.
  for (int attempt = 0; attempt < 100; ++attempt) {
    temp_ = final_.parent_path() / (attempt ? stem + "-" + std::to_string(attempt) : stem);
    if (fs::create_directory(temp_, ec)) return;
    if (ec) throw Error("cannot create " + temp_.string() + ": " + ec.message());
  }
  throw Error("cannot create a temporary directory next to " + final_.string());
}

AtomicDirectory::~AtomicDirectory() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(temp_, ec);
}

void AtomicDirectory::commit(bool replace) {
  std::error_code ec;
  if (replace) fs::remove_all(final_, ec);
  fs::rename(temp_, final_, ec);
  if (ec) throw Error("cannot rename " + temp_.string() + " to " + final_.string() + ": " + ec.message());
  committed_ = true;
}

}  // namespace esft
