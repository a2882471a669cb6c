#pragma once
// The --device and --dtype choices every model-running command accepts.
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>
#include <vector>

namespace esft {

// "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:N". Throws esft::UsageError otherwise, or
// esft::Error when CUDA is asked for and unavailable.
c10::Device parse_device(const std::string& text);
// "auto" (bfloat16 on CUDA, float32 on CPU), "float32", "bfloat16".
c10::ScalarType parse_dtype(const std::string& text, const c10::Device& device);
const char* dtype_label(c10::ScalarType dtype);
// Waits for the device's queued work (a no-op on the CPU), so wall-clock timings measure the work itself.
void synchronize(const c10::Device& device);
// The process's peak resident memory so far, in MiB (getrusage).
double peak_rss_mib();
// Peak memory of the process on `device`: the CUDA caching allocator's peak of allocated bytes on a GPU,
// peak_rss_mib() on the CPU. In MiB.
double peak_memory_mib(const c10::Device& device);

// Makes glibc's malloc keep the memory it frees instead of handing it back to the kernel. By default every block of
// 32 MiB and more is its own mmap, unmapped when freed: a training step then faults in a gigabyte of fresh zeroed
// pages (bank-sized gradients, optimizer temporaries, activations), and page faults, not arithmetic, bound the step
// on the CPU. Called once at the start of every program that runs models (esft-host, the benchmarks).
void keep_freed_memory();

// What this build and machine offer, for --version, run records and the headers of benchmark tables.
struct GpuInfo {
  int index = 0;
  std::string name;        // "NVIDIA H100 80GB HBM3"
  int major = 0, minor = 0;  // compute capability
  double memory_gib = 0;
};
struct Accelerators {
  bool cuda_compiled = false;  // the CUDA path is built in (ESFT_CUDA) and LibTorch's CUDA runtime is loaded
  std::string cuda_version;    // CUDA runtime LibTorch was built with, "13.0"; empty without CUDA
  std::string cudnn_version;   // "9.19.0"; empty when cuDNN is absent
  std::vector<GpuInfo> gpus;   // visible devices
};
Accelerators accelerators();
// One line: "CUDA compiled in (CUDA 13.0, cuDNN 9.19.0); 1 GPU visible: cuda:0 NVIDIA H100 ... (sm_90, 79.2 GiB)",
// "CUDA compiled in (...); no GPU visible", or "CUDA not compiled in (configured with ESFT_CUDA=OFF)".
std::string describe_accelerators(const Accelerators& a);

}  // namespace esft
