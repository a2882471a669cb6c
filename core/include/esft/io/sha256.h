#pragma once
// SHA-256 (FIPS 180-4), written out here so that fingerprinting a file needs no crypto library. Used to tie an
// adapter to the exact base config.json it was trained on.
#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace esft {

// Incremental hashing: update() any number of times, then hex_digest() once.
class Sha256 {
 public:
  Sha256();
  void update(std::string_view bytes);
  std::string hex_digest();  // 64 lowercase hex digits; the object is spent afterwards

 private:
  void compress(const unsigned char* block);

  std::array<uint32_t, 8> state_;
  std::array<unsigned char, 64> buffer_{};
  std::size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

std::string sha256_hex(std::string_view bytes);

// Hash of a file's bytes, read in chunks. Throws esft::Error naming the file when it cannot be read.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace esft
