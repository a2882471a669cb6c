#include "esft/runtime.h"

#include <ATen/Context.h>
#include <torch/cuda.h>

#include <sys/resource.h>

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

}  // namespace esft
