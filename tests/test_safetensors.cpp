// Safetensors reader/writer, sharded checkpoints and atomic output files.
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/io/safetensors.h"

#include <ATen/ATen.h>
#include "doctest_torch.h"
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#ifndef ESFT_TEST_DATA_DIR
#error "ESFT_TEST_DATA_DIR must be defined by the build"
#endif

namespace fs = std::filesystem;
using nlohmann::json;

#include "test_support.h"

using namespace test_support;

namespace {

// A raw safetensors file: length prefix, header text as given, `data_bytes` zero bytes of data.
std::string craft(const std::string& header, std::size_t data_bytes) {
  return craft_safetensors(header, std::string(data_bytes, '\0'));
}


std::string open_error(const fs::path& file) {
  return error_of([&] { esft::SafetensorsFile f(file); });
}

// Readable in doctest failure output (doctest cannot print c10::ScalarType itself).
std::string type_name(c10::ScalarType t) { return c10::toString(t); }

bool has_temp_files(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("safetensors: every dtype round-trips with metadata, scalars and empty tensors") {
  TempDir tmp;
  const std::vector<double> values = {1.0, -2.0, 0.5, 3.0, 0.0, 7.0};
  const auto make = [&](at::ScalarType t) {
    std::vector<double> v = values;
    if (t == at::kByte)
      for (double& x : v) x = std::abs(x);
    return at::tensor(v, at::TensorOptions().dtype(at::kDouble)).reshape({2, 3}).to(t);
  };
  esft::NamedTensors tensors = {
      {"f64", make(at::kDouble)},
      {"f32", make(at::kFloat)},
      {"f16", at::tensor(std::vector<double>{1.5, -2.0, 0.25, 65504.0}, at::kDouble).to(at::kHalf)},
      {"bf16", at::tensor(std::vector<double>{1.0, -3.5, 0.15625, 256.0}, at::kDouble).to(at::kBFloat16)},
      {"i64", at::tensor(std::vector<int64_t>{INT64_MIN, -1, 0, INT64_MAX}, at::kLong)},
      {"i32", make(at::kInt)},
      {"i16", at::tensor(std::vector<int64_t>{-32768, 32767, 5}, at::kLong).to(at::kShort)},
      {"i8", at::tensor(std::vector<int64_t>{-128, 127, 0}, at::kLong).to(at::kChar)},
      {"u8", at::tensor(std::vector<int64_t>{0, 255, 17}, at::kLong).to(at::kByte)},
      {"bool", at::tensor(std::vector<int64_t>{1, 0, 1, 1}, at::kLong).to(at::kBool)},
      {"scalar", at::scalar_tensor(3.25, at::TensorOptions().dtype(at::kDouble))},
      {"empty", at::empty({0, 3}, at::TensorOptions().dtype(at::kFloat))},
      // Non-contiguous input: the writer must store the logical (transposed) order.
      {"transposed", at::arange(6, at::TensorOptions().dtype(at::kFloat)).reshape({2, 3}).t()},
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "round trip"}};
  const fs::path file = tmp.path / "all.safetensors";
  esft::save_safetensors(file, tensors, metadata);
  CHECK_FALSE(has_temp_files(tmp.path));

  // On-disk layout: the header is padded to a multiple of 8 and the first data bytes follow it directly.
  const std::string raw = read_bytes(file);
  REQUIRE(raw.size() >= 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(raw[i]);
  CHECK(header_len % 8 == 0);
  const json header = json::parse(raw.substr(8, header_len));
  CHECK(header["__metadata__"]["format"] == "pt");
  CHECK(header["f32"]["dtype"] == "F32");
  CHECK(header["f32"]["shape"] == json::array({2, 3}));
  CHECK(header["bool"]["data_offsets"][1].get<uint64_t>() - header["bool"]["data_offsets"][0].get<uint64_t>() == 4);
  const uint64_t f32_begin = header["f32"]["data_offsets"][0].get<uint64_t>();
  float first = 0;
  std::memcpy(&first, raw.data() + 8 + header_len + f32_begin, 4);
  CHECK(first == 1.0f);
  // Tensors are laid out in name order.
  CHECK(header["bf16"]["data_offsets"][0].get<uint64_t>() == 0);

  esft::SafetensorsFile f(file);
  CHECK(f.metadata() == metadata);
  REQUIRE(f.tensors().size() == tensors.size());
  for (std::size_t i = 1; i < f.tensors().size(); ++i) CHECK(f.tensors()[i - 1].name < f.tensors()[i].name);
  for (const auto& entry : tensors) {
    const auto& name = entry.first;  // not a structured binding: doctest's CAPTURE captures it
    const auto& expected = entry.second;
    CAPTURE(name);
    const esft::TensorInfo* info = f.find(name);
    REQUIRE(info != nullptr);
    CHECK(type_name(esft::to_scalar_type(info->dtype)) == type_name(expected.scalar_type()));
    const at::Tensor got = f.load(name);
    CHECK(type_name(got.scalar_type()) == type_name(expected.scalar_type()));
    CHECK(got.sizes() == expected.sizes());
    CHECK(got.device().is_cpu());
    CHECK(at::equal(got, expected.contiguous()));
    const at::Tensor v = f.view(name);
    CHECK(at::equal(v, expected.contiguous()));
  }
  CHECK(f.load("scalar").dim() == 0);
  CHECK(f.load("scalar").item<double>() == 3.25);
  CHECK(f.load("empty").numel() == 0);
  CHECK(f.find("missing") == nullptr);

  // Conversion on load: BF16 -> F32 is an exact upcast; device CPU given explicitly.
  const at::Tensor up = f.load("bf16", at::TensorOptions().dtype(at::kFloat).device(at::kCPU));
  CHECK(type_name(up.scalar_type()) == "Float");
  CHECK(at::equal(up, at::tensor(std::vector<float>{1.0f, -3.5f, 0.15625f, 256.0f})));
  const at::Tensor down = f.load("f64", at::TensorOptions().dtype(at::kInt));
  CHECK(type_name(down.scalar_type()) == "Int");
  CHECK(down[0][0].item<int>() == 1);
}

TEST_CASE("safetensors: unaligned data loads correctly and view falls back to a copy") {
  TempDir tmp;
  // Header length 4 bytes short of a multiple of 8 puts the F32 data at an address that is 4 mod 8, and an I64
  // tensor after one byte of U8 is misaligned for its element size.
  const std::string header =
      R"({"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"c":{"dtype":"I64","shape":[1],"data_offsets":[1,9]}})";
  std::string padded = header;
  padded.append((8 - padded.size() % 8) % 8, ' ');  // data starts 8-aligned, so "c" sits at 1 mod 8
  std::string bytes = u64_le(padded.size()) + padded;
  bytes.push_back(static_cast<char>(200));
  const int64_t v = -1234567890123LL;
  bytes.append(reinterpret_cast<const char*>(&v), 8);
  write_bytes(tmp.path / "u.safetensors", bytes);
  esft::SafetensorsFile f(tmp.path / "u.safetensors");
  CHECK(f.load("b").item<uint8_t>() == 200);
  CHECK(f.load("c").item<int64_t>() == v);
  CHECK(f.view("c").item<int64_t>() == v);
}

TEST_CASE("safetensors: sharded write, Checkpoint::open and load") {
  TempDir tmp;
  esft::NamedTensors tensors;
  for (int i = 0; i < 7; ++i)
    tensors.push_back({"layer." + std::to_string(i) + ".weight",
                       at::arange(10 * (i + 1), at::TensorOptions().dtype(at::kFloat)) * (i + 1)});
  tensors.push_back({"big", at::ones({100}, at::TensorOptions().dtype(at::kDouble))});  // 800 bytes > limit
  tensors.push_back({"flag", at::zeros({3}, at::TensorOptions().dtype(at::kBool))});
  const uint64_t limit = 200;
  const auto names = esft::save_sharded_safetensors(tmp.path, tensors, limit, {{"format", "pt"}});
  REQUIRE(names.size() >= 3);
  for (std::size_t i = 0; i < names.size(); ++i) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, names.size());
    CHECK(names[i] == buf);
    CHECK(fs::is_regular_file(tmp.path / names[i]));
  }
  CHECK_FALSE(has_temp_files(tmp.path));
  CHECK_FALSE(fs::exists(tmp.path / "model.safetensors"));

  uint64_t total = 0;
  for (const auto& [name, t] : tensors) total += t.numel() * t.element_size();
  const json index = json::parse(read_bytes(tmp.path / "model.safetensors.index.json"));
  CHECK(index["metadata"]["total_size"].get<uint64_t>() == total);
  REQUIRE(index["weight_map"].is_object());
  CHECK(index["weight_map"].size() == tensors.size());
  CHECK(read_bytes(tmp.path / "model.safetensors.index.json").find("\n  \"metadata\"") != std::string::npos);

  const esft::Checkpoint ck = esft::Checkpoint::open(tmp.path);
  CHECK(ck.sharded());
  CHECK(ck.files().size() == names.size());
  CHECK(ck.keys().size() == tensors.size());
  CHECK(ck.total_bytes() == total);
  for (const auto& entry : tensors) {
    const auto& name = entry.first;  // not a structured binding: doctest's CAPTURE captures it
    const auto& expected = entry.second;
    CAPTURE(name);
    REQUIRE(ck.contains(name));
    CHECK(index["weight_map"][name] == ck.file_of(name).path().filename().string());
    CHECK(at::equal(ck.load(name), expected));
    CHECK(ck.info(name).nbytes() == static_cast<uint64_t>(expected.numel() * expected.element_size()));
  }
  // Every shard obeys the limit unless it holds a single oversized tensor; each carries the metadata.
  for (const auto& file : ck.files()) {
    uint64_t bytes = 0;
    for (const auto& t : file->tensors()) bytes += t.nbytes();
    CHECK((bytes <= limit || file->tensors().size() == 1));
    CHECK(file->metadata().at("format") == "pt");
  }
  CHECK(ck.file_of("big").tensors().size() == 1);

  // A single-file checkpoint opens too.
  TempDir single;
  esft::save_safetensors(single.path / "model.safetensors", tensors);
  const esft::Checkpoint ck1 = esft::Checkpoint::open(single.path);
  CHECK_FALSE(ck1.sharded());
  CHECK(ck1.keys().size() == tensors.size());
  CHECK(at::equal(ck1.load("layer.3.weight"), tensors[3].second));
}

TEST_CASE("safetensors: writer rejects duplicate names and unsupported dtypes") {
  TempDir tmp;
  const at::Tensor t = at::zeros({2});
  std::string msg = error_of([&] { esft::save_safetensors(tmp.path / "d.safetensors", {{"a", t}, {"a", t}}); });
  CHECK(msg.find("duplicate") != std::string::npos);
  CHECK(msg.find("'a'") != std::string::npos);
  msg = error_of([&] {
    esft::save_safetensors(tmp.path / "c.safetensors",
                           {{"z", at::zeros({2}, at::TensorOptions().dtype(at::kComplexFloat))}});
  });
  CHECK(msg.find("'z'") != std::string::npos);
  CHECK(fs::is_empty(tmp.path));
}

TEST_CASE("atomic file: commit publishes, no commit leaves nothing, missing directory fails") {
  TempDir tmp;
  const fs::path target = tmp.path / "out.bin";
  {
    esft::AtomicFile f(target);
    f.stream() << "partial";
    CHECK_FALSE(fs::exists(target));
    CHECK(has_temp_files(tmp.path));
  }
  CHECK_FALSE(fs::exists(target));
  CHECK(fs::is_empty(tmp.path));

  {
    esft::AtomicFile f(target);
    f.stream().write("a\0b", 3);
    f.commit();
  }
  CHECK(read_bytes(target) == std::string("a\0b", 3));
  CHECK_FALSE(has_temp_files(tmp.path));

  esft::write_text_atomically(target, "replaced\n");
  CHECK(read_bytes(target) == "replaced\n");

  const std::string msg = error_of([&] { esft::AtomicFile f(tmp.path / "no_such_dir" / "x.bin"); });
  CHECK(msg.find("cannot write") != std::string::npos);
  CHECK(msg.find("no_such_dir") != std::string::npos);
}

TEST_CASE("safetensors: malformed files are rejected with a clear message") {
  TempDir tmp;
  const fs::path p = tmp.path / "bad.safetensors";
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";

  SUBCASE("shorter than 8 bytes") {
    write_bytes(p, std::string("\x05\0\0", 3));
    const std::string msg = open_error(p);
    CHECK(msg.find("truncated") != std::string::npos);
    CHECK(msg.find(p.string()) != std::string::npos);
  }
  SUBCASE("header length past end of file") {
    write_bytes(p, u64_le(4096) + std::string(92, ' '));
    const std::string msg = open_error(p);
    CHECK(msg.find("truncated") != std::string::npos);
    CHECK(msg.find("header length 4096 exceeds file size 100") != std::string::npos);
  }
  SUBCASE("header length over the limit") {
    write_bytes(p, u64_le(esft::kMaxSafetensorsHeaderBytes + 1) + "{}");
    CHECK(open_error(p).find("exceeds the limit") != std::string::npos);
  }
  SUBCASE("header is not JSON") {
    write_bytes(p, craft("{\"a\": not json", 0));
    CHECK(open_error(p).find("not valid JSON") != std::string::npos);
  }
  SUBCASE("header is not an object") {
    write_bytes(p, craft("[1,2]", 0));
    CHECK(open_error(p).find("not a JSON object") != std::string::npos);
  }
  SUBCASE("metadata value is not a string") {
    write_bytes(p, craft(R"({"__metadata__":{"k":1}})", 0));
    CHECK(open_error(p).find("__metadata__") != std::string::npos);
  }
  SUBCASE("unknown dtype") {
    write_bytes(p, craft(R"({"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2));
    const std::string msg = open_error(p);
    CHECK(msg.find("unknown dtype 'F8_E4M3'") != std::string::npos);
    CHECK(msg.find("'a'") != std::string::npos);
  }
  SUBCASE("negative shape") {
    write_bytes(p, craft(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", 0));
    CHECK(open_error(p).find("shape") != std::string::npos);
  }
  SUBCASE("offsets out of range") {
    write_bytes(p, craft("{" + ok_entry + "}", 12));
    const std::string msg = open_error(p);
    CHECK(msg.find("out of range") != std::string::npos);
    CHECK(msg.find("data size 12") != std::string::npos);
  }
  SUBCASE("begin after end") {
    write_bytes(p, craft(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}})", 8));
    CHECK(open_error(p).find("begin after end") != std::string::npos);
  }
  SUBCASE("dtype/shape mismatch") {
    write_bytes(p, craft(R"({"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 16));
    const std::string msg = open_error(p);
    CHECK(msg.find("tensor 'a.weight': data_offsets [0, 12] do not match shape [2,2] x F32 = 16 bytes") !=
          std::string::npos);
  }
  SUBCASE("overlapping tensors") {
    write_bytes(p, craft("{" + ok_entry + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16));
    const std::string msg = open_error(p);
    CHECK(msg.find("overlap") != std::string::npos);
    CHECK(msg.find("'a'") != std::string::npos);
    CHECK(msg.find("'b'") != std::string::npos);
  }
  SUBCASE("zero-size tensors never overlap") {
    write_bytes(p, craft("{" + ok_entry + R"(,"e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}})", 16));
    esft::SafetensorsFile f(p);
    CHECK(f.tensors().size() == 2);
    CHECK(f.load("e").numel() == 0);
  }
  SUBCASE("unknown tensor name on load") {
    write_bytes(p, craft("{" + ok_entry + "}", 16));
    esft::SafetensorsFile f(p);
    const std::string msg = error_of([&] { f.load("nope"); });
    CHECK(msg.find("'nope'") != std::string::npos);
    CHECK(msg.find(p.string()) != std::string::npos);
  }
}

TEST_CASE("checkpoint: bad model directories and indexes are rejected") {
  TempDir tmp;
  const std::string shard = "model-00001-of-00001.safetensors";
  esft::save_safetensors(tmp.path / shard, {{"w", at::ones({2})}});
  const auto write_index = [&](const json& weight_map) {
    write_bytes(tmp.path / "model.safetensors.index.json",
                json{{"metadata", {{"total_size", 8}}}, {"weight_map", weight_map}}.dump());
  };

  SUBCASE("missing model directory") {
    const std::string msg = error_of([&] { esft::Checkpoint::open(tmp.path / "absent"); });
    CHECK(msg.find("model directory not found") != std::string::npos);
    CHECK(msg.find("absent") != std::string::npos);
  }
  SUBCASE("directory without weights") {
    TempDir empty;
    const std::string msg = error_of([&] { esft::Checkpoint::open(empty.path); });
    CHECK(msg.find("no safetensors weights") != std::string::npos);
  }
  SUBCASE("index names a file outside the directory with ..") {
    write_index({{"w", "../x.safetensors"}});
    const std::string msg = error_of([&] { esft::Checkpoint::open(tmp.path); });
    CHECK(msg.find("outside the model directory") != std::string::npos);
    CHECK(msg.find("../x.safetensors") != std::string::npos);
  }
  SUBCASE("index names an absolute path") {
    const std::string abs = (tmp.path / shard).string();
    write_index({{"w", abs}});
    const std::string msg = error_of([&] { esft::Checkpoint::open(tmp.path); });
    CHECK(msg.find("outside the model directory") != std::string::npos);
    CHECK(msg.find(abs) != std::string::npos);
  }
  SUBCASE("index names a symlink escaping the directory") {
    TempDir outside;
    esft::save_safetensors(outside.path / "evil.safetensors", {{"w", at::ones({2})}});
    fs::create_symlink(outside.path, tmp.path / "link");
    write_index({{"w", "link/evil.safetensors"}});
    CHECK(error_of([&] { esft::Checkpoint::open(tmp.path); }).find("outside the model directory") !=
          std::string::npos);
  }
  SUBCASE("a shard that is a symbolic link to a file elsewhere loads (the Hugging Face cache layout)") {
    TempDir blobs;
    esft::save_safetensors(blobs.path / "blob", {{"w", at::ones({2})}});
    fs::create_symlink(blobs.path / "blob", tmp.path / "linked.safetensors");
    write_index({{"w", "linked.safetensors"}});
    CHECK(esft::Checkpoint::open(tmp.path).load("w").sum().item<float>() == 2.0f);
  }
  SUBCASE("index names a tensor missing from its shard") {
    write_index({{"w", shard}, {"ghost", shard}});
    const std::string msg = error_of([&] { esft::Checkpoint::open(tmp.path); });
    CHECK(msg.find("tensor 'ghost' listed in model.safetensors.index.json is missing from") != std::string::npos);
    CHECK(msg.find(shard) != std::string::npos);
  }
  SUBCASE("a tensor in two shards") {
    esft::save_safetensors(tmp.path / "other.safetensors", {{"w", at::ones({2})}});
    write_index({{"w", shard}, {"w2", "other.safetensors"}});
    CHECK(error_of([&] { esft::Checkpoint::open(tmp.path); }).find("two shards") != std::string::npos);
  }
  SUBCASE("index without weight_map") {
    write_bytes(tmp.path / "model.safetensors.index.json", "{\"metadata\":{}}");
    CHECK(error_of([&] { esft::Checkpoint::open(tmp.path); }).find("weight_map") != std::string::npos);
  }
  SUBCASE("unlisted shard tensors are kept; unknown names are errors") {
    esft::save_safetensors(tmp.path / shard, {{"w", at::ones({2})}, {"extra", at::zeros({1})}});
    write_index({{"w", shard}});
    const esft::Checkpoint ck = esft::Checkpoint::open(tmp.path);
    CHECK(ck.contains("extra"));
    for (const std::string which : {"info", "load"}) {
      const std::string msg = error_of([&] {
        if (which == "info")
          ck.info("nope");
        else
          ck.load("nope");
      });
      CHECK(msg.find("tensor 'nope' not found in checkpoint") != std::string::npos);
      CHECK(msg.find(tmp.path.string()) != std::string::npos);
    }
  }
}

TEST_CASE("checkpoint: the Qwen3-MoE fixture reads") {
  const fs::path dir = fs::path(ESFT_TEST_DATA_DIR) / "hf/qwen3_moe/model";
  REQUIRE_MESSAGE(fs::is_directory(dir), "fixture missing: " << dir.string());
  const esft::Checkpoint ck = esft::Checkpoint::open(dir);
  CHECK(ck.sharded());
  CHECK(ck.files().size() == 17);
  CHECK(ck.keys().size() == 102);
  const esft::TensorInfo& gate = ck.info("model.layers.0.mlp.gate.weight");
  CHECK(std::string(esft::dtype_name(gate.dtype)) == "F32");
  CHECK(gate.shape == std::vector<int64_t>{8, 64});
  const json index = json::parse(read_bytes(dir / "model.safetensors.index.json"));
  CHECK(ck.total_bytes() == index["metadata"]["total_size"].get<uint64_t>());
  for (const std::string& name : ck.keys()) {
    CAPTURE(name);
    const at::Tensor t = ck.load(name);
    CHECK(t.sizes().vec() == ck.info(name).shape);
    CHECK(at::equal(t, ck.file_of(name).view(name)));
    CHECK(bool(at::isfinite(t.to(at::kFloat)).all().item<bool>()));
  }
  const at::Tensor g = ck.load("model.layers.0.mlp.gate.weight", at::TensorOptions().dtype(at::kDouble));
  CHECK(type_name(g.scalar_type()) == "Double");
  CHECK(g.sizes() == at::IntArrayRef({8, 64}));
}
