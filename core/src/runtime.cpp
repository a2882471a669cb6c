#include "esft/runtime.h"

#include <ATen/Context.h>
#include <torch/cuda.h>

#ifdef ESFT_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <malloc.h>
#include <sys/resource.h>

#include <cstdio>

#include "esft/error.h"

namespace esft {

c10::Device parse_device(const std::string& text) {
  if (text == "auto") return at::hasCUDA() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  if (text == "cpu") return c10::Device(c10::kCPU);
  if (text == "cuda" || text.rfind("cuda:", 0) == 0) {
    c10::Device device(c10::kCUDA, 0);
    if (text.size() > 5) {
      const auto index = text.substr(5);
      if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos || index.size() > 3) {
        throw UsageError("invalid --device '" + text + "' (expected auto, cpu, cuda or cuda:N)");
      }
      device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(std::stoi(index)));
    }
    if (!at::hasCUDA()) throw Error("--device " + text + " asked for CUDA, but this build or machine has no CUDA device");
    const auto count = torch::cuda::device_count();
    if (device.index() >= static_cast<int64_t>(count))
      throw Error("--device " + text + ": this machine has " + std::to_string(count) + " CUDA device" +
                  (count == 1 ? "" : "s") + " (cuda:0" + (count > 1 ? " to cuda:" + std::to_string(count - 1) : "") + ")");
    return device;
  }
  throw UsageError("invalid --device '" + text + "' (expected auto, cpu, cuda or cuda:N)");
}

c10::ScalarType parse_dtype(const std::string& text, const c10::Device& device) {
  if (text == "auto") return device.is_cuda() ? c10::kBFloat16 : c10::kFloat;
  if (text == "float32") return c10::kFloat;
  if (text == "bfloat16") return c10::kBFloat16;
  throw UsageError("invalid --dtype '" + text + "' (expected auto, float32 or bfloat16)");
}

const char* dtype_label(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat: return "float32";
    case c10::kBFloat16: return "bfloat16";
    case c10::kHalf: return "float16";
    default: return "other";
  }
}

void synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

double peak_memory_mib(const c10::Device& device) {
#ifdef ESFT_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    const auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    return static_cast<double>(stats.allocated_bytes[aggregate].peak) / (1024.0 * 1024.0);
  }
#endif
  (void)device;
  return peak_rss_mib();
}

void keep_freed_memory() {
  // No block gets its own mmap (so none is unmapped when freed), and free memory at the top of the heap is never
  // trimmed. The heap's high-water mark is then the process's peak, as with PyTorch's caching allocator on a GPU.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, -1);
}

#ifdef ESFT_WITH_CUDA
namespace {
// CUDA's integer version (major * 1000 + minor * 10, cuDNN: major * 10000 + minor * 100 + patch in 9.x).
std::string cuda_version_text(long v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }
std::string cudnn_version_text(long v) {
  return std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." + std::to_string(v % 100);
}
}  // namespace
#endif

Accelerators accelerators() {
  Accelerators a;
#ifdef ESFT_WITH_CUDA
  auto& context = at::globalContext();
  a.cuda_compiled = context.hasCUDART();
  if (!a.cuda_compiled) return a;
  a.cuda_version = cuda_version_text(context.versionCUDART());
  if (context.hasCuDNN()) a.cudnn_version = cudnn_version_text(context.versionCuDNN());
  if (!at::hasCUDA()) return a;
  for (int i = 0; i < static_cast<int>(at::cuda::device_count()); ++i) {
    const cudaDeviceProp* p = at::cuda::getDeviceProperties(i);
    a.gpus.push_back({i, p->name, p->major, p->minor, static_cast<double>(p->totalGlobalMem) / (1u << 30)});
  }
#endif
  return a;
}

std::string describe_accelerators(const Accelerators& a) {
  if (!a.cuda_compiled) {
#ifdef ESFT_WITH_CUDA
    return "CUDA compiled in, but LibTorch's CUDA runtime is not loaded";
#else
    return "CUDA not compiled in (configured with ESFT_CUDA=OFF)";
#endif
  }
  std::string out = "CUDA compiled in (CUDA " + a.cuda_version;
  if (!a.cudnn_version.empty()) out += ", cuDNN " + a.cudnn_version;
  out += "); ";
  if (a.gpus.empty()) return out + "no GPU visible";
  out += std::to_string(a.gpus.size()) + (a.gpus.size() == 1 ? " GPU" : " GPUs") + " visible:";
  char buf[64];
  for (const auto& g : a.gpus) {
    std::snprintf(buf, sizeof buf, " (sm_%d%d, %.1f GiB)", g.major, g.minor, g.memory_gib);
    out += (g.index ? ", cuda:" : " cuda:") + std::to_string(g.index) + " " + g.name + buf;
  }
  return out;
}

}  // namespace esft
