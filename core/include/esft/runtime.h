#pragma once
// The --device and --dtype choices every model-running command accepts.
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

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

}  // namespace esft
