// A .safetensors file: header length, JSON header (dtypes, shapes, offsets, __metadata__), data. Every tensor of a
// file that opens is then read both ways (copied out, and viewed in place).
#include "esft/io/safetensors.h"
#include "fuzz_target.h"

ESFT_FUZZ_TARGET(safetensors) {
  const auto path = esft::fuzz::write_scratch_file("model.safetensors", data);
  esft::fuzz::expect_only_clean_errors([&] {
    const esft::SafetensorsFile file(path);
    for (const auto& t : file.tensors()) {
      file.load(t.name);
      file.view(t.name);
    }
  });
}
