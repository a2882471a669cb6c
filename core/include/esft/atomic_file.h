#pragma once
// Output files appear under their final name only when complete: data goes to a temporary file in the same
// directory (same filesystem, so the rename is atomic) and is renamed into place by commit(). An AtomicFile
// destroyed without commit() removes its temporary, so a failed or interrupted command leaves no partial output.
#include <filesystem>
#include <fstream>
#include <string>

namespace esft {

class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path path);  // throws esft::Error when the directory is not writable
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  std::ofstream& stream() { return out_; }
  void commit();  // flush, fsync-free close, rename; throws esft::Error on I/O failure

 private:
  std::filesystem::path path_;
  std::filesystem::path temp_;
  std::ofstream out_;
  bool committed_ = false;
};

void write_text_atomically(const std::filesystem::path& path, const std::string& text);

}  // namespace esft
