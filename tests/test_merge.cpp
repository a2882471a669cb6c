// SHA-256 against the FIPS 180-4 vectors, and `merge`: base checkpoint + ESFT adapter -> a complete Hugging Face
// checkpoint, with untouched tensors byte-identical, replaced ones cast to the base dtype, slices of fused tensors,
// other files copied, every refusal named, and no output (not even a temporary) left by a failed merge.
#include "doctest_torch.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>


#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "esft/error.h"
#include "esft/io/safetensors.h"
#include "esft/io/sha256.h"
#include "esft/pipeline/adapter_merge.h"

#if !defined(ESFT_BIN_DIR) || !defined(ESFT_TEST_DATA_DIR)
#error "ESFT_BIN_DIR and ESFT_TEST_DATA_DIR must be defined by the build"
#endif

namespace fs = std::filesystem;
using nlohmann::json;
namespace pl = esft::pipeline;

#include "cli_support.h"
#include "test_support.h"

using namespace test_support;
using cli_support::contains;
using cli_support::Run;
using cli_support::run_host;

namespace {

const fs::path kQwen3 = fs::path(ESFT_TEST_DATA_DIR) / "hf" / "qwen3_moe" / "model";  // float32, 17 shards
const fs::path kQwen2 = fs::path(ESFT_TEST_DATA_DIR) / "hf" / "qwen2_moe" / "model";  // bfloat16, one file
const std::string kFused = "model.layers.0.mlp.experts.gate_up_proj";



json manifest_for(const fs::path& base) {
  return {{"format", "esft-adapter"},
          {"version", 1},
          {"method", "esft"},
          {"family", "qwen3_moe"},
          {"model_type", "qwen3_moe"},
          {"base_model", base.string()},
          {"base_config_sha256", esft::sha256_file_hex(base / "config.json")},
          {"dtype", "float32"},
          {"steps", 500}};  // a key merge does not know: ignored
}

// An adapter directory for `base`: the tensors, its manifest (after `edit`), and an expert_config.json (`experts`).
fs::path make_adapter(const fs::path& dir, const fs::path& base, const esft::NamedTensors& tensors,
                      const std::function<void(json&)>& edit = {}, const std::string& experts = R"({"1": [5]})") {
  fs::create_directories(dir);
  esft::save_safetensors(dir / "model.safetensors", tensors);
  json manifest = manifest_for(base);
  if (edit) edit(manifest);
  write_bytes(dir / "esft_adapter.json", manifest.dump(2));
  write_bytes(dir / "expert_config.json",
              R"({"experts": )" + experts + R"(, "shared_experts": false, "non_expert_modules": false})");
  return dir;
}

// A checkpoint small enough to write by hand: config.json, tokenizer files and one model.safetensors.
fs::path make_base(const fs::path& dir, const esft::NamedTensors& tensors) {
  fs::create_directories(dir);
  write_bytes(dir / "config.json", R"({"model_type": "gpt_oss", "num_local_experts": 4})");
  write_bytes(dir / "tokenizer.json", R"({"model": {"type": "BPE"}})");
  write_bytes(dir / "chat_template.jinja", "{{ messages }}");
  esft::save_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
  return dir;
}

pl::MergeReport merge(const fs::path& base, const fs::path& adapter, const fs::path& out,
                      uint64_t max_shard = pl::kDefaultMaxShardBytes) {
  pl::MergeOptions options;
  options.base_dir = base;
  options.adapter_dir = adapter;
  options.out_dir = out;
  options.max_shard_bytes = max_shard;
  return pl::merge_adapter(options);
}

std::string raw_bytes(const esft::Checkpoint& ck, const std::string& key) {
  const at::Tensor v = ck.file_of(key).view(key);
  return std::string(static_cast<const char*>(v.data_ptr()), ck.info(key).nbytes());
}

// Same name, dtype, shape and raw bytes in both checkpoints.
void check_identical(const esft::Checkpoint& base, const esft::Checkpoint& merged, const std::string& key) {
  INFO("tensor ", key);
  REQUIRE(merged.contains(key));
  CHECK(merged.info(key).dtype == base.info(key).dtype);
  CHECK(merged.info(key).shape == base.info(key).shape);
  const std::string a = raw_bytes(base, key), b = raw_bytes(merged, key);
  CHECK(a.size() == b.size());
  CHECK(std::memcmp(a.data(), b.data(), std::min(a.size(), b.size())) == 0);
}

// Nothing named like the merge's temporary next to `out`.
bool partial_left(const fs::path& out) {
  if (!fs::is_directory(out.parent_path())) return false;
  for (const auto& e : fs::directory_iterator(out.parent_path()))
    if (contains(e.path().filename().string(), ".partial")) return true;
  return false;
}

// A merge that must fail with an esft::Error mentioning every needle, leaving neither `out` nor a temporary.
void expect_merge_error(const fs::path& base, const fs::path& adapter, const fs::path& out,
                        std::initializer_list<std::string> needles) {
  const std::string message = error_of([&] { merge(base, adapter, out); });
  INFO("error: ", message);
  for (const auto& needle : needles) CHECK_MESSAGE(contains(message, needle), "error should mention '", needle, "'");
  CHECK_FALSE(fs::exists(out));
  CHECK_FALSE(partial_left(out));
}

at::Tensor random_like_base(const esft::Checkpoint& base, const std::string& key, at::ScalarType dtype) {
  return at::randn(base.info(key).shape, at::TensorOptions().dtype(at::kFloat)).to(dtype);
}

}  // namespace

// ===============================================================================================================
// SHA-256

TEST_CASE("sha256: the FIPS 180-4 example messages") {
  CHECK(esft::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(esft::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(esft::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(esft::sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                         "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu") == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  CHECK(esft::sha256_hex(std::string(1000000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256: padding at the block boundaries, and any split into updates, give the same digest") {
  // Lengths where the length field just fits (55), just does not (56) and whole blocks (64, 120): values from
  // Python's hashlib.
  const std::map<std::size_t, std::string> expected = {
      {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
      {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
      {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
      {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
      {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"}};
  for (const auto& entry : expected) {
    const auto& n = entry.first;  // not a structured binding: doctest's CAPTURE captures it
    const auto& digest = entry.second;
    INFO(n, " bytes");
    const std::string text(n, 'a');
    CHECK(esft::sha256_hex(text) == digest);
    for (std::size_t step : {1, 7, 63, 64}) {
      esft::Sha256 h;
      for (std::size_t i = 0; i < n; i += step) h.update(std::string_view(text).substr(i, step));
      CHECK(h.hex_digest() == digest);
    }
  }
}

TEST_CASE("sha256: a file hashes as its bytes, an unreadable path is an esft::Error naming it") {
  TempDir tmp;
  std::string bytes(200000, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((i * 131) % 251);
  write_bytes(tmp / "data.bin", bytes);
  CHECK(esft::sha256_file_hex(tmp / "data.bin") == esft::sha256_hex(bytes));
  write_bytes(tmp / "empty", "");
  CHECK(esft::sha256_file_hex(tmp / "empty") == esft::sha256_hex(""));
  CHECK(contains(error_of([&] { esft::sha256_file_hex(tmp / "missing.json"); }), "missing.json"));
  CHECK(contains(error_of([&] { esft::sha256_file_hex(tmp.path); }), tmp.path.string()));
}

// ===============================================================================================================
// Merge: good runs

TEST_CASE("merge: qwen3_moe (float32, sharded): adapter tensors replace theirs, every other tensor is byte-identical") {
  TempDir tmp;
  const auto base = esft::Checkpoint::open(kQwen3);
  const std::string expert = "model.layers.1.mlp.experts.5.gate_proj.weight";
  const std::string attn = "model.layers.0.self_attn.q_proj.weight";
  const std::string widened = "model.layers.2.mlp.experts.3.down_proj.weight";
  const auto expert_value = random_like_base(base, expert, at::kFloat);
  const auto attn_value = random_like_base(base, attn, at::kFloat);
  const auto widened_value = random_like_base(base, widened, at::kBFloat16);  // a bfloat16 adapter widens exactly
  const auto adapter =
      make_adapter(tmp / "adapter", kQwen3, {{expert, expert_value}, {attn, attn_value}, {widened, widened_value}});

  const auto out = tmp / "merged";
  const auto report = merge(kQwen3, adapter, out, 300000);  // ~1 MB of tensors: several shards
  CHECK(report.tensors_replaced == 3);
  CHECK(report.tensors_sliced == 0);
  CHECK(report.slices_replaced == 0);
  CHECK(report.tensors_copied == base.keys().size() - 3);
  CHECK(report.bytes == base.total_bytes());
  CHECK(report.shards.size() >= 4);
  CHECK(report.files_copied == std::vector<std::string>{"config.json", "generation_config.json"});

  const auto merged = esft::Checkpoint::open(out);
  CHECK(merged.sharded());
  CHECK(merged.keys() == base.keys());
  for (const auto& key : base.keys())
    if (key != expert && key != attn && key != widened) check_identical(base, merged, key);
  const std::vector<std::pair<std::string, at::Tensor>> replaced = {
      {expert, expert_value}, {attn, attn_value}, {widened, widened_value}};
  for (const auto& entry : replaced) {
    const auto& key = entry.first;  // not a structured binding: doctest's CAPTURE captures it
    const auto& value = entry.second;
    INFO("tensor ", key);
    CHECK(merged.info(key).dtype == esft::DType::F32);
    CHECK(at::equal(merged.load(key), value.to(at::kFloat)));
  }

  // The layout transformers writes: numbered shards of at most the limit (or one tensor), an index with total_size,
  // and the base's other files byte for byte.
  const json index = json::parse(read_bytes(out / "model.safetensors.index.json"));
  CHECK(index["metadata"]["total_size"].get<uint64_t>() == base.total_bytes());
  CHECK(index["weight_map"].size() == base.keys().size());
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(out)) {
    ++files;
    const auto name = e.path().filename().string();
    if (name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0) {
      CHECK(std::find(report.shards.begin(), report.shards.end(), name) != report.shards.end());
      esft::SafetensorsFile shard(e.path());
      CHECK(shard.metadata().at("format") == "pt");
    }
  }
  CHECK(files == report.shards.size() + 3);
  CHECK(report.shards.front() == "model-00001-of-" + std::string(5 - std::to_string(report.shards.size()).size(), '0') +
                                     std::to_string(report.shards.size()) + ".safetensors");
  for (const char* name : {"config.json", "generation_config.json"})
    CHECK(read_bytes(out / name) == read_bytes(kQwen3 / name));
  CHECK_FALSE(partial_left(out));
}

TEST_CASE("merge: qwen2_moe (bfloat16, one file): float32 adapter values are rounded to bfloat16") {
  TempDir tmp;
  const auto base = esft::Checkpoint::open(kQwen2);
  const std::string expert = "model.layers.2.mlp.experts.1.up_proj.weight";
  const std::string shared = "model.layers.0.mlp.shared_expert.down_proj.weight";
  auto expert_value = random_like_base(base, expert, at::kFloat);
  // 1 + 2^-8 + 2^-9 lies between the bfloat16 neighbours 1 and 1 + 2^-7, nearer the upper one: rounding gives
  // 1.0078125 where truncating the low bits would give 1.
  expert_value[0][0].fill_(1.005859375);
  const auto shared_value = random_like_base(base, shared, at::kFloat);
  const auto adapter = make_adapter(tmp / "adapter", kQwen2, {{expert, expert_value}, {shared, shared_value}});

  // An existing empty output directory is fine.
  const auto out = tmp / "merged";
  fs::create_directory(out);
  const auto report = merge(kQwen2, adapter, out);
  CHECK(report.tensors_replaced == 2);
  CHECK(report.shards == std::vector<std::string>{"model-00001-of-00001.safetensors"});

  const auto merged = esft::Checkpoint::open(out);
  CHECK(merged.keys() == base.keys());
  for (const auto& key : base.keys())
    if (key != expert && key != shared) check_identical(base, merged, key);
  CHECK(merged.info(expert).dtype == esft::DType::BF16);
  CHECK(at::equal(merged.load(expert), expert_value.to(at::kBFloat16)));
  CHECK(at::equal(merged.load(shared), shared_value.to(at::kBFloat16)));
  CHECK(merged.load(expert)[0][0].item<float>() == 1.0078125f);
  CHECK(read_bytes(out / "config.json") == read_bytes(kQwen2 / "config.json"));
}

TEST_CASE("merge: slices of a fused tensor replace only their rows") {
  TempDir tmp;
  const auto fused = at::arange(24, at::TensorOptions().dtype(at::kFloat)).reshape({4, 3, 2});
  const auto other = at::arange(5, at::TensorOptions().dtype(at::kFloat));
  const auto base_dir = make_base(tmp / "base", {{kFused, fused}, {"model.norm.weight", other}});
  const auto row2 = at::full({3, 2}, -1.5f);
  const auto row0 = at::full({3, 2}, 7.25f, at::TensorOptions().dtype(at::kBFloat16));
  const auto adapter = make_adapter(tmp / "adapter", base_dir,
                                    {{pl::adapter_slice_name(kFused, 2), row2}, {kFused + "#0", row0}});

  const auto report = merge(base_dir, adapter, tmp / "merged");
  CHECK(report.tensors_sliced == 1);
  CHECK(report.slices_replaced == 2);
  CHECK(report.tensors_replaced == 0);
  CHECK(report.tensors_copied == 1);
  CHECK(report.files_copied == std::vector<std::string>{"chat_template.jinja", "config.json", "tokenizer.json"});

  const auto merged = esft::Checkpoint::open(tmp / "merged");
  const auto result = merged.load(kFused);
  CHECK(result.sizes() == fused.sizes());
  CHECK(at::equal(result[0], row0.to(at::kFloat)));
  CHECK(at::equal(result[1], fused[1]));
  CHECK(at::equal(result[2], row2));
  CHECK(at::equal(result[3], fused[3]));
  check_identical(esft::Checkpoint::open(base_dir), merged, "model.norm.weight");
  for (const char* name : {"chat_template.jinja", "config.json", "tokenizer.json"})
    CHECK(read_bytes(tmp / "merged" / name) == read_bytes(base_dir / name));
}

TEST_CASE("merge: slice names and byte sizes") {
  std::string key;
  int64_t index = -1;
  CHECK(pl::adapter_slice_name(kFused, 12) == kFused + "#12");
  CHECK(pl::parse_adapter_slice_name(kFused + "#12", key, index));
  CHECK(key == kFused);
  CHECK(index == 12);
  CHECK(pl::parse_adapter_slice_name("a#0", key, index));
  CHECK(index == 0);
  for (const char* not_slice : {"a.weight", "a#", "#3", "a#01", "a#-1", "a#1x", "a#99999999999999999999"})
    CHECK_MESSAGE(!pl::parse_adapter_slice_name(not_slice, key, index), not_slice);

  CHECK(pl::parse_byte_size("5GB") == 5'000'000'000ULL);
  CHECK(pl::parse_byte_size("500MB") == 500'000'000ULL);
  CHECK(pl::parse_byte_size("2GiB") == 2ULL << 30);
  CHECK(pl::parse_byte_size("64kib") == 64ULL << 10);
  CHECK(pl::parse_byte_size("1TB") == 1'000'000'000'000ULL);
  CHECK(pl::parse_byte_size("123") == 123ULL);
  CHECK(pl::parse_byte_size("123B") == 123ULL);
  for (const char* bad : {"", "GB", "0", "0GB", "-1", "1.5GB", "5 GB", "5XB", "18446744073709551616", "20000000000TB"})
    CHECK_MESSAGE(!pl::parse_byte_size(bad).has_value(), bad);
  CHECK(pl::format_bytes(512) == "512 B");
  CHECK(pl::format_bytes(1'016'128) == "1.02 MB");
}

TEST_CASE("merge: the adapter manifest keeps the trainer's fields and ignores unknown ones") {
  json j = manifest_for(kQwen3);
  const auto m = pl::AdapterManifest::from_json(j, "esft_adapter.json");
  CHECK(m.version == 1);
  CHECK(m.family == "qwen3_moe");
  CHECK(m.model_type == "qwen3_moe");
  CHECK(m.method == "esft");
  CHECK(m.dtype == "float32");
  CHECK(m.base_model == kQwen3.string());
  CHECK(m.base_config_sha256 == esft::sha256_file_hex(kQwen3 / "config.json"));

  const auto refused = [&](const std::function<void(json&)>& edit) {
    json bad = manifest_for(kQwen3);
    edit(bad);
    return error_of([&] { pl::AdapterManifest::from_json(bad, "A/esft_adapter.json"); });
  };
  CHECK(contains(refused([](json& b) { b.erase("base_config_sha256"); }), "base_config_sha256"));
  CHECK(contains(refused([](json& b) { b["base_config_sha256"] = "abc"; }), "64 hex digits"));
  CHECK(contains(refused([](json& b) { b["format"] = "peft"; }), "'peft', expected 'esft-adapter'"));
  CHECK(contains(refused([](json& b) { b.erase("format"); }), "\"format\""));
  CHECK(contains(refused([](json& b) { b["version"] = 2; }), "version 2 is not supported"));
  CHECK(contains(refused([](json& b) { b["version"] = "1"; }), "\"version\""));
  CHECK(contains(refused([](json& b) { b["family"] = 3; }), "\"family\""));
  CHECK(contains(refused([](json& b) { b = json::array(); }), "A/esft_adapter.json: not a JSON object"));
}

// ===============================================================================================================
// Merge: refusals

TEST_CASE("merge: a bad adapter or output is refused with one clear message and leaves no output") {
  TempDir tmp;
  const auto base = esft::Checkpoint::open(kQwen3);
  const std::string expert = "model.layers.1.mlp.experts.5.gate_proj.weight";
  const esft::NamedTensors good = {{expert, random_like_base(base, expert, at::kFloat)}};
  const auto out = tmp / "merged";

  SUBCASE("no esft_adapter.json") {
    const auto adapter = make_adapter(tmp / "adapter", kQwen3, good);
    fs::remove(adapter / "esft_adapter.json");
    expect_merge_error(kQwen3, adapter, out, {"esft_adapter.json", adapter.string(), "not an ESFT adapter"});
  }
  SUBCASE("malformed esft_adapter.json") {
    const auto adapter = make_adapter(tmp / "adapter", kQwen3, good);
    write_bytes(adapter / "esft_adapter.json", "{\"format\": ");
    expect_merge_error(kQwen3, adapter, out, {"esft_adapter.json", "malformed JSON"});
  }
  SUBCASE("another format") {
    const auto adapter = make_adapter(tmp / "adapter", kQwen3, good, [](json& m) { m["format"] = "lora"; });
    expect_merge_error(kQwen3, adapter, out, {"esft_adapter.json", "'lora'", "esft-adapter"});
  }
  SUBCASE("another version") {
    const auto adapter = make_adapter(tmp / "adapter", kQwen3, good, [](json& m) { m["version"] = 2; });
    expect_merge_error(kQwen3, adapter, out, {"esft_adapter.json", "version 2"});
  }
  SUBCASE("trained on another base model") {
    const auto adapter = make_adapter(tmp / "adapter", kQwen3, good, [](json& m) {
      m["base_config_sha256"] = esft::sha256_file_hex(kQwen2 / "config.json");
      m["base_model"] = "/models/Qwen2-MoE";
    });
    expect_merge_error(kQwen3, adapter, out,
                       {"trained on another base model", "/models/Qwen2-MoE", (kQwen3 / "config.json").string(),
                        adapter.string()});
  }
  SUBCASE("an adapter tensor the base lacks") {
    const auto adapter = make_adapter(tmp / "adapter", kQwen3,
                                      {{"model.layers.1.mlp.experts.99.gate_proj.weight", at::zeros({32, 64})}});
    expect_merge_error(kQwen3, adapter, out, {"'model.layers.1.mlp.experts.99.gate_proj.weight'", kQwen3.string()});
  }
  SUBCASE("an adapter tensor of another shape") {
    const auto adapter = make_adapter(tmp / "adapter", kQwen3, {{expert, at::zeros({64, 32})}});
    expect_merge_error(kQwen3, adapter, out, {"'" + expert + "'", "[64,32]", "[32,64]"});
  }
  SUBCASE("no model.safetensors in the adapter") {
    const auto adapter = make_adapter(tmp / "adapter", kQwen3, good);
    fs::remove(adapter / "model.safetensors");
    expect_merge_error(kQwen3, adapter, out, {"model.safetensors", adapter.string()});
  }
  SUBCASE("the output directory exists and is not empty: it is left as it was") {
    const auto adapter = make_adapter(tmp / "adapter", kQwen3, good);
    fs::create_directory(out);
    write_bytes(out / "keep.txt", "mine");
    const std::string message = error_of([&] { merge(kQwen3, adapter, out); });
    CHECK(contains(message, out.string()));
    CHECK(contains(message, "not empty"));
    CHECK(read_bytes(out / "keep.txt") == "mine");
    CHECK_FALSE(partial_left(out));
  }
  SUBCASE("the output directory is the base directory") {
    const auto base_copy = tmp / "base";
    fs::copy(kQwen2, base_copy, fs::copy_options::recursive);
    const auto adapter = make_adapter(tmp / "adapter", base_copy, {});
    const std::string message = error_of([&] { merge(base_copy, adapter, base_copy / "."); });
    CHECK(contains(message, "base model directory"));
    CHECK(read_bytes(base_copy / "model.safetensors") == read_bytes(kQwen2 / "model.safetensors"));
    CHECK_FALSE(partial_left(base_copy));
  }
  SUBCASE("no base model directory") {
    const auto adapter = make_adapter(tmp / "adapter", kQwen3, good);
    expect_merge_error(tmp / "nowhere", adapter, out, {"base model directory not found", (tmp / "nowhere").string()});
  }
  SUBCASE("the output directory's parent does not exist") {
    const auto adapter = make_adapter(tmp / "adapter", kQwen3, good);
    expect_merge_error(kQwen3, adapter, tmp / "no" / "such" / "dir", {(tmp / "no" / "such").string()});
  }
}

TEST_CASE("merge: bad slices, and MXFP4 bases, are refused") {
  TempDir tmp;
  const auto fused = at::zeros({4, 3, 2});
  const auto base_dir = make_base(tmp / "base", {{kFused, fused}});
  const auto out = tmp / "merged";

  SUBCASE("a slice index out of range") {
    const auto adapter = make_adapter(tmp / "adapter", base_dir, {{kFused + "#4", at::zeros({3, 2})}});
    expect_merge_error(base_dir, adapter, out, {"'" + kFused + "#4'", "out of range", "[4,3,2]"});
  }
  SUBCASE("a slice of the wrong shape") {
    const auto adapter = make_adapter(tmp / "adapter", base_dir, {{kFused + "#1", at::zeros({2, 3})}});
    expect_merge_error(base_dir, adapter, out, {"'" + kFused + "#1'", "[2,3]", "[3,2]"});
  }
  SUBCASE("a tensor both whole and sliced") {
    const auto adapter =
        make_adapter(tmp / "adapter", base_dir, {{kFused, at::zeros({4, 3, 2})}, {kFused + "#1", at::zeros({3, 2})}});
    expect_merge_error(base_dir, adapter, out, {"'" + kFused + "'", "both whole and as slices"});
  }
  SUBCASE("an MXFP4-quantized base tensor") {
    const auto u8 = at::TensorOptions().dtype(at::kByte);
    const auto mx_dir = make_base(tmp / "mxfp4", {{kFused + "_blocks", at::zeros({4, 6, 1, 16}, u8)},
                                                  {kFused + "_scales", at::zeros({4, 6, 1}, u8)}});
    for (const std::string& name : {kFused + "#1", kFused}) {
      INFO(name);
      const auto adapter = make_adapter(tmp / ("adapter" + std::to_string(name.size())), mx_dir,
                                        {{name, name == kFused ? at::zeros({4, 6, 32}) : at::zeros({6, 32})}});
      expect_merge_error(mx_dir, adapter, out, {"MXFP4", "not supported yet", kFused + "_blocks"});
    }
  }
}

TEST_CASE("merge: an error after writing has begun removes the temporary directory") {
  TempDir tmp;
  const auto base = esft::Checkpoint::open(kQwen3);
  const std::string expert = "model.layers.1.mlp.experts.5.gate_proj.weight";
  const auto adapter = make_adapter(tmp / "adapter", kQwen3, {{expert, random_like_base(base, expert, at::kFloat)}});
  for (const std::string stop_at : {"writing", "  wrote", "  copied"}) {
    INFO("stopped at: ", stop_at);
    pl::MergeOptions options;
    options.base_dir = kQwen3;
    options.adapter_dir = adapter;
    options.out_dir = tmp / "merged";
    options.max_shard_bytes = 300000;
    bool partial_seen = false;
    // The progress callback is the one hook inside the merge: failing there stands in for a full disk or a kill.
    options.progress = [&](const std::string& line) {
      if (line.rfind(stop_at, 0) != 0) return;
      partial_seen = partial_left(options.out_dir);
      throw esft::Error("stopped");
    };
    CHECK(error_of([&] { pl::merge_adapter(options); }) == "stopped");
    CHECK(partial_seen);
    CHECK_FALSE(fs::exists(options.out_dir));
    CHECK_FALSE(partial_left(options.out_dir));
  }
}

// ===============================================================================================================
// Command line

TEST_CASE("merge: esft-host merge prints progress and a summary, a bad --max-shard-size is a usage error") {
  TempDir tmp;
  const auto base = esft::Checkpoint::open(kQwen2);
  const std::string expert = "model.layers.0.mlp.experts.3.down_proj.weight";
  // esft-host merge checks the expert config against the model (qwen2_moe's fixture: MoE layers 0 and 2).
  const auto adapter = make_adapter(tmp / "adapter", kQwen2, {{expert, random_like_base(base, expert, at::kFloat)}}, {},
                                    R"({"0": [3], "2": []})");
  const auto out = tmp / "merged";

  const Run bad = run_host({"merge", "--model", kQwen2.string(), "--adapter", adapter.string(), "--out", out.string(),
                            "--max-shard-size", "5XB"});
  CHECK(bad.code == 2);
  CHECK(contains(bad.err, "esft-host: error: --max-shard-size: '5XB'"));
  CHECK_FALSE(fs::exists(out));

  const Run missing = run_host({"merge", "--model", kQwen2.string(), "--out", out.string()});
  CHECK(missing.code == 2);
  CHECK(contains(missing.err, "adapter"));

  const Run good = run_host({"merge", "--model", kQwen2.string(), "--adapter", adapter.string(), "--out",
                             out.string(), "--max-shard-size", "100KB"});
  INFO("stdout: ", good.out);
  INFO("stderr: ", good.err);
  CHECK(good.code == 0);
  CHECK(good.err.empty());
  CHECK(contains(good.out, "wrote model-00001-of-"));
  CHECK(contains(good.out, "merged: " + std::to_string(base.keys().size() - 1) + " tensors copied, 1 replaced"));
  CHECK(contains(good.out, "wrote " + out.string()));
  const auto merged = esft::Checkpoint::open(out);
  CHECK(merged.files().size() > 1);
  CHECK(merged.keys() == base.keys());

  const Run again = run_host({"merge", "--model", kQwen2.string(), "--adapter", adapter.string(), "--out",
                              out.string()});
  CHECK(again.code == 1);
  CHECK(contains(again.err, "not empty"));
}
