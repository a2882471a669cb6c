// MXFP4 dequantization: known bytes and scales decode to the values the OCP format defines, and a whole gpt-oss
// fixture checkpoint converted to MXFP4 loads to exactly the weights its blocks encode.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <cmath>

#include "esft/error.h"
#include "esft/io/mxfp4.h"
#include "esft/io/safetensors.h"
#include "esft/io/weights.h"
#include "plugin_loader.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;

// Decodes one 4-bit e2m1 code the long way (sign, 2-bit exponent with bias 1, 1 mantissa bit), independently of
// the library's table.
double e2m1(int code) {
  const double sign = (code & 8) ? -1 : 1;
  const int exponent = (code >> 1) & 3, mantissa = code & 1;
  const double magnitude = exponent == 0 ? 0.5 * mantissa : std::ldexp(1.0 + 0.5 * mantissa, exponent - 1);
  return sign * magnitude;
}

// Reference dequantization, one scalar at a time: [..., G, 16] bytes, [..., G] scales -> [..., G*32] doubles.
at::Tensor reference_dequantize(const at::Tensor& blocks, const at::Tensor& scales) {
  auto b = blocks.contiguous().reshape({-1, 16});
  auto s = scales.contiguous().reshape({-1});
  auto out = at::empty({b.size(0), 32}, at::kDouble);
  auto bp = b.accessor<uint8_t, 2>();
  auto sp = s.accessor<uint8_t, 1>();
  auto op = out.accessor<double, 2>();
  for (int64_t g = 0; g < b.size(0); ++g) {
    for (int64_t i = 0; i < 16; ++i) {
      op[g][2 * i] = std::ldexp(e2m1(bp[g][i] & 0xF), sp[g] - 127);
      op[g][2 * i + 1] = std::ldexp(e2m1(bp[g][i] >> 4), sp[g] - 127);
    }
  }
  auto shape = scales.sizes().vec();
  shape.back() *= 32;
  return out.reshape(shape);
}

// Test-side MXFP4 quantizer for rows of a [E, rows, cols] tensor (cols a multiple of 32): per block of 32 the
// scale is 2^(floor(log2(amax)) - 2), so amax lands in [4, 8) and rounds to the nearest e2m1 value (max 6).
std::pair<at::Tensor, at::Tensor> quantize(const at::Tensor& w) {
  auto x = w.to(at::kDouble).contiguous().reshape({-1, 32});
  auto blocks = at::zeros({x.size(0), 16}, at::kByte);
  auto scales = at::zeros({x.size(0)}, at::kByte);
  auto xp = x.accessor<double, 2>();
  auto bp = blocks.accessor<uint8_t, 2>();
  auto sp = scales.accessor<uint8_t, 1>();
  for (int64_t g = 0; g < x.size(0); ++g) {
    double amax = 0;
    for (int64_t i = 0; i < 32; ++i) amax = std::max(amax, std::abs(xp[g][i]));
    const int exponent = amax > 0 ? static_cast<int>(std::floor(std::log2(amax))) - 2 : -127;
    sp[g] = static_cast<uint8_t>(exponent + 127);
    for (int64_t i = 0; i < 32; ++i) {
      const double v = std::ldexp(xp[g][i], -exponent);
      int best = 0;
      for (int code = 0; code < 16; ++code)
        if (std::abs(e2m1(code) - v) < std::abs(e2m1(best) - v)) best = code;
      bp[g][i / 2] |= static_cast<uint8_t>(i % 2 == 0 ? best : best << 4);
    }
  }
  const int64_t E = w.size(0), rows = w.size(1), G = w.size(2) / 32;
  return {blocks.reshape({E, rows, G, 16}), scales.reshape({E, rows, G})};
}

}  // namespace

TEST_CASE("mxfp4: every code and scale decodes as the format defines") {
  // Six blocks of 32 values, one scale each (blocks [G=6, 16] -> [192]); bytes hold code pairs (low nibble first)
  // that walk through all 16 codes in both nibbles.
  const std::vector<uint8_t> scale_values = {127, 128, 120, 134, 1, 250};  // 1: subnormal results
  auto blocks = at::empty({static_cast<int64_t>(scale_values.size()), 16}, at::kByte);
  auto scales = at::empty({static_cast<int64_t>(scale_values.size())}, at::kByte);
  for (int64_t g = 0; g < blocks.size(0); ++g) {
    scales[g] = scale_values[static_cast<size_t>(g)];
    for (int64_t i = 0; i < 16; ++i) blocks[g][i] = static_cast<uint8_t>(((2 * i) % 16) | (((2 * i + 1 + g) % 16) << 4));
  }
  auto ours = esft::dequantize_mxfp4(blocks, scales);
  REQUIRE(ours.dim() == 1);
  CHECK(ours.size(0) == 6 * 32);
  CHECK((ours.scalar_type() == at::kFloat));
  CHECK(ours.to(at::kDouble).equal(reference_dequantize(blocks, scales)));

  // Spot values written out by hand: byte 0x21 at scale 127 is (+0.5, +1.0); byte 0xF8 at scale 128 is (-0, -12).
  auto b = at::zeros({2, 16}, at::kByte);
  b[0][0] = 0x21;
  b[1][0] = 0xF8;
  auto s = at::tensor({127, 128}, at::kByte);
  auto v = esft::dequantize_mxfp4(b, s);
  CHECK(v[0].item<float>() == 0.5f);
  CHECK(v[1].item<float>() == 1.0f);
  CHECK(v[32].item<float>() == 0.0f);
  CHECK(std::signbit(v[32].item<float>()));
  CHECK(v[33].item<float>() == -12.0f);
  CHECK(v[34].item<float>() == 0.0f);  // the rest of block 1 is code 0 (+0)
}

TEST_CASE("mxfp4: wrong dtypes and shapes are refused") {
  auto blocks = at::zeros({2, 3, 16}, at::kByte);
  auto scales = at::zeros({2, 3}, at::kByte);
  CHECK_NOTHROW(esft::dequantize_mxfp4(blocks, scales));
  CHECK_THROWS_AS(esft::dequantize_mxfp4(blocks.to(at::kInt), scales), esft::Error);
  CHECK_THROWS_AS(esft::dequantize_mxfp4(at::zeros({2, 3, 8}, at::kByte), scales), esft::Error);
  CHECK_THROWS_AS(esft::dequantize_mxfp4(blocks, at::zeros({2, 4}, at::kByte)), esft::Error);
  CHECK_THROWS_WITH_AS(esft::dequantize_mxfp4(blocks, at::full({2, 3}, 255, at::kByte)), doctest::Contains("255"),
                       esft::Error);
}

TEST_CASE("mxfp4: bfloat16 output holds the same values, and long tensors go through in chunks") {
  at::manual_seed(3);
  auto blocks = at::randint(0, 256, {3, 40000, 16}, at::kByte);  // 120,000 blocks: several chunks
  auto scales = at::randint(100, 150, {3, 40000}, at::kByte);
  auto f32 = esft::dequantize_mxfp4(blocks, scales);
  auto bf16 = esft::dequantize_mxfp4(blocks, scales, at::kBFloat16);
  CHECK((bf16.scalar_type() == at::kBFloat16));
  CHECK(bf16.to(at::kFloat).equal(f32));
  CHECK(f32.narrow(1, 39999 * 32, 32).to(at::kDouble).equal(
      reference_dequantize(blocks.narrow(1, 39999, 1), scales.narrow(1, 39999, 1)).view({3, 32})));
}

TEST_CASE("mxfp4: a gpt_oss checkpoint converted to MXFP4 loads the weights its blocks encode") {
  const fs::path fixture = fs::path(ESFT_TEST_DATA_DIR) / "hf" / "gpt_oss" / "model";
  test_support::TempDir dir;
  fs::copy_file(fixture / "config.json", dir / "config.json");

  // Quantize every fused expert weight as the released checkpoints store it: rows are output features, blocks run
  // along the input features (transformers' layout transposed).
  const esft::SafetensorsFile original(fixture / "model.safetensors");
  esft::NamedTensors tensors;
  std::map<std::string, at::Tensor> dequantized;  // by base name, in transformers' layout
  for (const auto& info : original.tensors()) {
    auto t = original.load(info.name);
    const auto tail = info.name.substr(info.name.rfind('.') + 1);
    if (tail == "gate_up_proj" || tail == "down_proj") {
      auto [blocks, scales] = quantize(t.transpose(1, 2));
      tensors.emplace_back(info.name + "_blocks", blocks);
      tensors.emplace_back(info.name + "_scales", scales);
      dequantized[info.name] = reference_dequantize(blocks, scales).transpose(1, 2);
      // The rounding stays within one step of the coarsest e2m1 spacing (2 units of the block scale).
      const double step = std::ldexp(1.0, static_cast<int>(scales.max().item<int64_t>()) - 127);
      CHECK((dequantized[info.name] - t.to(at::kDouble)).abs().max().item<double>() <= 2 * step);
    } else {
      tensors.emplace_back(info.name, t);
    }
  }
  REQUIRE(dequantized.size() == 4);  // gate_up_proj and down_proj of 2 layers
  esft::save_safetensors(dir / "model.safetensors", tensors);

  esft::host::PluginLoader loader(std::vector<fs::path>{ESFT_BIN_DIR});
  auto family = loader.load("gpt_oss");
  auto config = esft::ModelConfig::load(dir.path);
  auto model = esft::load_model(*family, config, c10::Device(c10::kCPU), c10::kFloat);

  size_t checked = 0;
  for (const auto& b : model->checkpoint_bindings()) {
    auto it = dequantized.find(b.key());
    if (it == dequantized.end()) {
      CHECK_MESSAGE(b.value().equal(original.load(b.key())), b.key());
      continue;
    }
    CHECK_MESSAGE(b.value().to(at::kDouble).equal(it->second), b.key());
    ++checked;
  }
  CHECK(checked == 4);
}
