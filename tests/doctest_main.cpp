// The main of every test suite. A suite run with ESFT_TEST_DEVICE naming a CUDA device (ctest's
// "parity_tests (cuda)") exits with 77 when this build or machine has no GPU, which ctest reports as not run
// (SKIP_RETURN_CODE): a GPU test that could not run is never counted as passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <ATen/Context.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "doctest_torch.h"
#include "esft/runtime.h"

int main(int argc, char** argv) {
  const char* device = std::getenv("ESFT_TEST_DEVICE");
  if (device && std::string(device).rfind("cuda", 0) == 0 && !at::hasCUDA()) {
    std::printf("not run: ESFT_TEST_DEVICE=%s, but %s\n", device,
                esft::describe_accelerators(esft::accelerators()).c_str());
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
