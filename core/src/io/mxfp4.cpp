#include "esft/io/mxfp4.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "esft/error.h"

namespace esft {

const float kE2M1Values[16] = {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f, +4.0f, +6.0f,
                               -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

namespace {
const std::string kBlocks = "_blocks", kScales = "_scales";

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() > tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}
}  // namespace

at::Tensor dequantize_mxfp4(const at::Tensor& blocks, const at::Tensor& scales, at::ScalarType dtype) {
  if (blocks.scalar_type() != at::kByte || scales.scalar_type() != at::kByte) {
    throw Error("MXFP4 blocks and scales must be uint8");
  }
  if (blocks.dim() < 2 || blocks.size(-1) != 16) throw Error("MXFP4 blocks must have a last dimension of 16 bytes");
  const auto prefix = blocks.sizes().slice(0, blocks.dim() - 1);  // [..., G]
  if (scales.sizes() != prefix) throw Error("MXFP4 scales must have the blocks' shape without its last dimension");
  if ((scales == 255).any().item<bool>()) throw Error("MXFP4 scale 255 (NaN) is not a weight");

  std::vector<int64_t> shape = prefix.slice(0, prefix.size() - 1).vec();
  shape.push_back(prefix.back() * 32);
  auto out = at::empty(shape, blocks.options().dtype(dtype));
  const auto rows = blocks.reshape({-1, 16});  // one row per block of 32 values
  const auto exponents = scales.reshape({-1});
  auto out_rows = out.view({-1, 32});
  const auto table = at::tensor(at::ArrayRef<float>(kE2M1Values, 16)).to(blocks.device());
  constexpr int64_t kChunk = 1 << 15;  // blocks per step: 1M values, a few MB of temporaries
  for (int64_t start = 0; start < rows.size(0); start += kChunk) {
    const int64_t n = std::min(kChunk, rows.size(0) - start);
    const auto bytes = rows.narrow(0, start, n);
    auto low = table.index_select(0, bytes.bitwise_and(0x0F).reshape({-1}).to(at::kLong));
    auto high = table.index_select(0, at::div(bytes, 16, "floor").reshape({-1}).to(at::kLong));
    auto values = at::stack({low, high}, -1).view({n, 32});  // low nibble first within each byte
    // 2^(s - 127) exactly: ldexp scales by a power of two without rounding.
    values = at::ldexp(values, (exponents.narrow(0, start, n).to(at::kInt) - 127).unsqueeze(-1));
    out_rows.narrow(0, start, n).copy_(values);
  }
  return out;
}

std::vector<CheckpointTensor> checkpoint_tensors(const Checkpoint& checkpoint) {
  std::vector<CheckpointTensor> out;
  for (const auto& key : checkpoint.keys()) {
    if (ends_with(key, kScales) && checkpoint.contains(key.substr(0, key.size() - kScales.size()) + kBlocks)) continue;
    if (ends_with(key, kBlocks)) {
      const auto base = key.substr(0, key.size() - kBlocks.size());
      if (checkpoint.contains(base + kScales)) {
        const auto& shape = checkpoint.info(key).shape;  // [E, rows, G, 16]
        if (shape.size() != 4 || shape[3] != 16) {
          throw Error("MXFP4 tensor '" + key + "' must have shape [experts, rows, groups, 16]");
        }
        out.push_back({base, {shape[0], shape[2] * 32, shape[1]}, true});
        continue;
      }
    }
    out.push_back({key, checkpoint.info(key).shape, false});
  }
  return out;
}

at::Tensor read_checkpoint_tensor(const Checkpoint& checkpoint, const CheckpointTensor& tensor, at::ScalarType dtype) {
  if (!tensor.mxfp4) return checkpoint.file_of(tensor.key).view(tensor.key);
  const auto blocks_key = tensor.key + kBlocks, scales_key = tensor.key + kScales;
  try {
    auto blocks = checkpoint.file_of(blocks_key).view(blocks_key);
    auto scales = checkpoint.file_of(scales_key).view(scales_key);
    return dequantize_mxfp4(blocks, scales, dtype).transpose(-2, -1);
  } catch (const Error& e) {
    throw Error("cannot dequantize '" + tensor.key + "': " + e.what());
  }
}

}  // namespace esft
