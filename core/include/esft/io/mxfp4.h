#pragma once
// MXFP4 (OCP microscaling FP4), the format of gpt-oss' released expert weights. A tensor X is stored as a pair:
// `X_blocks` [..., rows, G, 16] uint8, two e2m1 values per byte (low nibble first), and `X_scales` [..., rows, G]
// uint8, one power-of-two scale 2^(s - 127) per block of 32 values. Dequantized on load; the model never sees the
// packed form.
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "esft/io/safetensors.h"

namespace esft {

// e2m1 value of each 4-bit code: sign bit 3, then 2 exponent bits and 1 mantissa bit.
extern const float kE2M1Values[16];

// blocks [..., G, 16] uint8 and scales [..., G] uint8 -> [..., G * 32] in `dtype` (exact in float32 and bfloat16,
// which share float32's exponent range). Works through the rows in chunks, so the temporaries stay small next to
// the output. Throws esft::Error for wrong dtypes or shapes, or a scale of 255 (NaN in the format).
at::Tensor dequantize_mxfp4(const at::Tensor& blocks, const at::Tensor& scales, at::ScalarType dtype = at::kFloat);

// A tensor as a model loads it: stored as is, or an MXFP4 pair presented under its base name in transformers'
// layout (blocks [E, rows, G, 16] -> [E, G * 32, rows], the dequantized [E, rows, G * 32] with its last two dims
// transposed).
struct CheckpointTensor {
  std::string key;
  std::vector<int64_t> shape;
  bool mxfp4 = false;
};

// Every tensor of the checkpoint, MXFP4 pairs folded into one entry. A `_blocks` without its `_scales` (or the
// reverse) stays two plain tensors, which then fail the key-set check by name.
std::vector<CheckpointTensor> checkpoint_tensors(const Checkpoint& checkpoint);

// The tensor's values: a view of the mapped file for plain tensors, a fresh tensor of `dtype` for MXFP4 pairs.
at::Tensor read_checkpoint_tensor(const Checkpoint& checkpoint, const CheckpointTensor& tensor,
                                  at::ScalarType dtype = at::kFloat);

}  // namespace esft
