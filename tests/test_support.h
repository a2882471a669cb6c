#pragma once
// Small helpers every test suite uses: temporary folders, raw file bytes, hand-made safetensors files, and tensor
// comparison.
#include <ATen/ATen.h>
#include "doctest_torch.h"
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "esft/error.h"

namespace test_support {

namespace fs = std::filesystem;

// A fresh empty directory, removed with everything in it at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<unsigned> counter{0};
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    path = fs::temp_directory_path() /
           ("esft_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + std::to_string(stamp));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  fs::path operator/(const std::string& name) const { return path / name; }
};

inline std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

inline std::string u64_le(uint64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

// A raw safetensors file, as broken as a test needs: 8-byte little-endian header length, header text, data bytes.
inline std::string craft_safetensors(const std::string& header, const std::string& data) {
  return u64_le(header.size()) + header + data;
}

// A PNG's width and height from its IHDR chunk (big-endian, after the 8-byte signature and the chunk header).
inline std::pair<int, int> png_size(const std::string& png) {
  REQUIRE(png.size() > 24);
  const auto u32 = [&](size_t at) {
    int v = 0;
    for (size_t i = 0; i < 4; ++i) v = v * 256 + static_cast<unsigned char>(png[at + i]);
    return v;
  };
  return {u32(16), u32(20)};
}

// The device model tests run on: $ESFT_TEST_DEVICE ("cuda", "cuda:N"), the CPU when unset.
inline c10::Device test_device() {
  static const c10::Device device = [] {
    const char* name = std::getenv("ESFT_TEST_DEVICE");
    return c10::Device(name && *name ? name : "cpu");
  }();
  return device;
}

// Max |a - b| over the rows [B*T] selected by `row_mask` (all rows when undefined).
inline double max_diff(const at::Tensor& a, const at::Tensor& b, const at::Tensor& row_mask = {}) {
  REQUIRE(a.sizes() == b.sizes());
  auto d = (a.to(at::kCPU, at::kDouble) - b.to(at::kCPU, at::kDouble)).abs();  // either may live on a GPU
  if (row_mask.defined()) d = d.reshape({row_mask.size(0), -1}).index({row_mask});
  return d.numel() ? d.max().item<double>() : 0.0;
}

// Runs `fn`, requires an esft::Error, and returns its message.
template <class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const esft::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("expected esft::Error, got another exception: " << e.what());
    return {};
  }
  FAIL("expected esft::Error, nothing was thrown");
  return {};
}

}  // namespace test_support
