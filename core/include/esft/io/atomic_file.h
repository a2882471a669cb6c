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

// The same for a folder of files: they are written into a temporary sibling `NAME.partial-<pid>` that commit()
// renames to NAME; destroyed without commit(), the sibling is removed with everything in it.
class AtomicDirectory {
 public:
  explicit AtomicDirectory(std::filesystem::path final_dir);  // throws esft::Error when it cannot be created
  ~AtomicDirectory();
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;

  const std::filesystem::path& path() const { return temp_; }
  // Renames the folder into place. rename(2) replaces an empty folder of the final name; `replace` removes a
  // non-empty one first (an older adapter), which is then the only moment the final name is absent.
  void commit(bool replace = false);

 private:
  std::filesystem::path final_;
  std::filesystem::path temp_;
  bool committed_ = false;
};

}  // namespace esft
