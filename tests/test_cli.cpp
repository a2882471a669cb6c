// esft-host as a user meets it: the real executable run as a child process, its exit code, stdout and stderr.
// Good runs must reproduce the transformers reference through the command line; bad input must end in exactly one
// line `esft-host: error: ...` naming what is wrong, exit code 2 for command-line mistakes and 1 for the rest, and
// a failed `forward` must leave nothing behind in its output folder (no partial file, no temporary).
#include <ATen/ATen.h>
#include "doctest_torch.h"
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "esft/io/safetensors.h"
#include "esft/plugin_abi.h"
#include "esft/runtime.h"

#if !defined(ESFT_BIN_DIR) || !defined(ESFT_TEST_DATA_DIR) || !defined(ESFT_WRONG_ABI_PLUGIN_DIR)
#error "ESFT_BIN_DIR, ESFT_TEST_DATA_DIR and ESFT_WRONG_ABI_PLUGIN_DIR must be defined by the build"
#endif

namespace fs = std::filesystem;
using nlohmann::json;

#include "cli_support.h"
#include "test_support.h"

using namespace test_support;
using namespace cli_support;

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Fixtures and tolerances (shared/fixtures/README.md)

constexpr double kValueTol = 1e-4;    // logits, hidden states, router logits, top-k weights: max abs diff
constexpr double kLossRelTol = 1e-5;  // losses: relative

const fs::path kFixture = fs::path(ESFT_TEST_DATA_DIR) / "hf" / "qwen3_moe";
const fs::path kModel = kFixture / "model";
const fs::path kReference = kFixture / "reference.safetensors";
const fs::path kWrongAbiDir = ESFT_WRONG_ABI_PLUGIN_DIR;

// The refusal text of check_plugin_info for the test plugin, which reports ABI version host + 1000.
std::string wrong_abi_text() {
  return "plugin has " + std::to_string(ESFT_PLUGIN_ABI_VERSION + 1000) + ", esft-host supports " +
         std::to_string(ESFT_PLUGIN_ABI_VERSION);
}

// ---------------------------------------------------------------------------------------------------------------
// Files and folders

json read_json(const fs::path& p) { return json::parse(read_bytes(p)); }
void write_json(const fs::path& p, const json& j) { write_bytes(p, j.dump(2) + "\n"); }

// A writable copy of the fixture model in `dir`/model (the fixture itself is never touched).
fs::path copy_model(const TempDir& dir) {
  const fs::path copy = dir / "model";
  fs::copy(kModel, copy, fs::copy_options::recursive);
  return copy;
}

// A copy of the fixture model whose config.json went through `edit`.
fs::path copy_model_with_config(const TempDir& dir, const std::function<void(json&)>& edit) {
  const fs::path model = copy_model(dir);
  auto config = read_json(model / "config.json");
  edit(config);
  write_json(model / "config.json", config);
  return model;
}

// The shard file that the index of `model_dir` names for `tensor`.
fs::path shard_of(const fs::path& model_dir, const std::string& tensor) {
  const auto index = read_json(model_dir / "model.safetensors.index.json");
  REQUIRE(index["weight_map"].contains(tensor));
  return model_dir / index["weight_map"][tensor].get<std::string>();
}

// Rewrites a well-formed safetensors file through `edit`, which may change its parsed header and its data bytes.
// The result is written raw, without any validation, so it can be as broken as a test needs.
void rewrite_safetensors(const fs::path& file, const std::function<void(json& header, std::string& data)>& edit) {
  const std::string bytes = read_bytes(file);
  REQUIRE(bytes.size() >= 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[i]);
  REQUIRE(8 + header_len <= bytes.size());
  json header = json::parse(bytes.substr(8, header_len));
  std::string data = bytes.substr(8 + header_len);
  edit(header, data);
  write_bytes(file, craft_safetensors(header.dump(), data));
}

// `esft-host [global...] forward --model M --inputs reference --out <fresh empty folder>/out.safetensors [extra...]`
// must fail with `code` and `needles`, and the output folder must still be empty afterwards.
void expect_forward_error(const fs::path& model, int code, std::initializer_list<std::string> needles,
                          const std::vector<std::string>& global = {}, const std::vector<std::string>& extra = {}) {
  TempDir out_dir;
  const auto out = out_dir / "out.safetensors";
  std::vector<std::string> args = global;
  for (const auto& a : {std::string("forward"), std::string("--model"), model.string(), std::string("--inputs"),
                        kReference.string(), std::string("--out"), out.string()})
    args.push_back(a);
  args.insert(args.end(), extra.begin(), extra.end());
  const Run r = run_host(args);
  expect_error(r, code, needles);
  INFO("command: ", r.command);
  CHECK_FALSE(fs::exists(out));
  CHECK_MESSAGE(entries_of(out_dir.path).empty(), "left in the output folder: ", joined(entries_of(out_dir.path)));
}

std::string comma_joined(const at::Tensor& ids) {
  const auto flat = ids.reshape({-1}).to(at::kLong).contiguous();
  std::string out;
  for (int64_t i = 0; i < flat.numel(); ++i) out += (i ? "," : "") + std::to_string(flat[i].item<int64_t>());
  return out;
}

bool in_forward_output(const std::string& name) {
  for (const char* prefix : {"hidden_states.", "router_logits.", "topk_idx.", "topk_weight."})
    if (name.rfind(prefix, 0) == 0) return true;
  return name == "logits" || name == "ce_loss" || name == "aux_loss";
}

}  // namespace

// ===============================================================================================================
// Good runs

TEST_CASE("cli: --version names LibTorch 2.x and says whether CUDA is compiled in and a GPU visible") {
  const Run r = run_host({"--version"});
  expect_success(r);
  CHECK(r.out.rfind("esft-host ", 0) == 0);
  CHECK(contains(r.out, "(libtorch 2."));
  const auto accelerators = esft::describe_accelerators(esft::accelerators());
  CHECK(contains(r.out, "\n" + accelerators + "\n"));
#ifdef ESFT_WITH_CUDA
  CHECK(accelerators.rfind("CUDA compiled in (CUDA ", 0) == 0);
  CHECK((contains(accelerators, "no GPU visible") || contains(accelerators, " visible: cuda:0 ")));
#else
  CHECK(accelerators == "CUDA not compiled in (configured with ESFT_CUDA=OFF)");
#endif
}

TEST_CASE("cli: --help lists every command and a command's --help its options") {
  const Run r = run_host({"--help"});
  expect_success(r);
  for (const char* command : {"plugins", "info", "forward", "generate"})
    CHECK_MESSAGE(contains(r.out, std::string("\n  ") + command + " "), "--help should list '", command, "'");

  const Run f = run_host({"forward", "--help"});
  expect_success(f);
  CHECK(contains(f.out, "--inputs"));
  CHECK(contains(f.out, "--out"));
}

TEST_CASE("cli: plugins lists qwen3_moe, and a wrong-ABI plugin as refused with both versions") {
  // Lines are `name version model-types file [refused: why]`; find the one whose first field is `name`.
  const auto line_of = [](const std::string& out, const std::string& name) -> std::optional<std::string> {
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream fields(line);
      std::string first;
      if (fields >> first && first == name) return line;
    }
    return std::nullopt;
  };

  const Run r = run_host({"plugins"});
  expect_success(r);
  INFO("stdout: ", r.out);
  const auto qwen = line_of(r.out, "qwen3_moe");
  REQUIRE(qwen);
  std::istringstream fields(*qwen);
  std::string name, version, types, file;
  fields >> name >> version >> types >> file;
  CHECK(types == "qwen3_moe");
  std::error_code ec;
  CHECK_MESSAGE(fs::equivalent(file, fs::path(ESFT_BIN_DIR) / "libesft_qwen3_moe.so", ec), "file field: ", file);
  CHECK_FALSE(contains(*qwen, "refused"));
  CHECK_FALSE(line_of(r.out, "wrong_abi"));  // it lives outside the default search path

  const Run w = run_host({"--plugin-dir", kWrongAbiDir.string(), "plugins"});
  expect_success(w);
  INFO("stdout: ", w.out);
  const auto wrong = line_of(w.out, "wrong_abi");
  REQUIRE(wrong);
  CHECK(contains(*wrong, "wrong_abi_model"));
  CHECK(contains(*wrong, "[refused:"));
  CHECK(contains(*wrong, wrong_abi_text()));
  const auto still_qwen = line_of(w.out, "qwen3_moe");
  REQUIRE(still_qwen);
  CHECK_FALSE(contains(*still_qwen, "refused"));
}

TEST_CASE("cli: plugins --verbose prints the host's and each plugin's ABI version and build fingerprint") {
  const Run r = run_host({"--plugin-dir", kWrongAbiDir.string(), "plugins", "--verbose"});
  expect_success(r);
  INFO("stdout: ", r.out);
  CHECK(contains(r.out, "esft-host accepts plugin ABI " + std::to_string(ESFT_PLUGIN_ABI_VERSION) + ", fingerprint '" +
                            ESFT_BUILD_FINGERPRINT + "'"));
  // Each plugin's line is followed by its own: the bundled ones match the host, the wrong-ABI one does not.
  const auto after = [&](const std::string& name) {
    const auto at = r.out.find("\n" + name + " ");
    REQUIRE(at != std::string::npos);
    const auto next = r.out.find('\n', at + 1);
    return r.out.substr(next + 1, r.out.find('\n', next + 1) - next - 1);
  };
  CHECK(after("qwen3_moe") == "    abi " + std::to_string(ESFT_PLUGIN_ABI_VERSION) + ", fingerprint '" +
                                  ESFT_BUILD_FINGERPRINT + "'");
  CHECK(after("llama") == "    abi " + std::to_string(ESFT_PLUGIN_ABI_VERSION) + ", fingerprint '" +
                              ESFT_BUILD_FINGERPRINT + "'");
  CHECK(contains(after("wrong_abi"), "abi " + std::to_string(ESFT_PLUGIN_ABI_VERSION + 1000)));
}

TEST_CASE("cli: parity measures a MoE and a dense plugin against their transformers fixtures") {
  const auto repo = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path();
  const Run moe = run_host({"--device", "cpu", "parity", "--fixture", (fs::path(ESFT_TEST_DATA_DIR) / "hf" / "qwen3_moe").string()});
  expect_success(moe);
  INFO("stdout: ", moe.out);
  for (const char* row : {"logits max|diff|", "hidden states max|diff|", "router logits max|diff|",
                          "top-k weights max|diff|", "tokens routed to other experts", "ce loss relative diff",
                          "aux loss relative diff", "worst gradient relative error", "greedy tokens differing"}) {
    CHECK_MESSAGE(contains(moe.out, row), row);
  }
  CHECK_FALSE(contains(moe.out, "FAIL"));
  CHECK(contains(moe.out, "all within tolerance"));

  const Run dense = run_host({"--device", "cpu", "parity", "--fixture",
                              (repo / "examples" / "plugin-llama" / "tests" / "fixtures" / "llama").string()});
  expect_success(dense);
  INFO("stdout: ", dense.out);
  CHECK(contains(dense.out, "parity of llama"));
  CHECK_FALSE(contains(dense.out, "router logits"));  // a dense model routes nothing
  CHECK(contains(dense.out, "greedy tokens differing"));
  CHECK(contains(dense.out, "all within tolerance"));
}

TEST_CASE("cli: parity fails, figure by figure, a model that is not the fixture's") {
  // The llama fixture with its Llama 3 rotary scaling removed: every position-dependent figure is off.
  const auto repo = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path();
  TempDir dir;
  fs::copy(repo / "examples" / "plugin-llama" / "tests" / "fixtures" / "llama", dir.path / "llama",
           fs::copy_options::recursive);
  const auto config_path = dir.path / "llama" / "model" / "config.json";
  auto config = nlohmann::json::parse(read_bytes(config_path));
  config["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
  write_bytes(config_path, config.dump());
  const Run r = run_host({"--device", "cpu", "parity", "--fixture", (dir.path / "llama").string()});
  INFO("stdout: ", r.out);
  INFO("stderr: ", r.err);
  CHECK(r.code == 1);
  CHECK(contains(r.out, "logits max|diff|"));
  CHECK(contains(r.out, "FAIL"));
  CHECK(r.err == kErrorPrefix + "parity: llama differs from transformers on " + (dir.path / "llama").string() + "\n");

  const Run missing = run_host({"--device", "cpu", "parity", "--fixture", dir.path.string()});
  expect_error(missing, 1, {"config.json"});
}

TEST_CASE("cli: info reports the fixture's tensors, files and parameter total") {
  const Run r = run_host({"info", "--model", kModel.string()});
  expect_success(r);
  INFO("stdout: ", r.out);
  CHECK(contains(r.out, "102 tensors"));
  CHECK(contains(r.out, "17 files"));
  CHECK(contains(r.out, "total 254,032"));
  CHECK(contains(r.out, "qwen3_moe"));
}

TEST_CASE("cli: info counts the parameters of ESFT-vanilla-lite and DeepSeek-V2-Lite from their configs alone") {
  // The figures transformers 5.17 reports for the same configs (tests/data/configs/README.md).
  for (const char* name : {"esft-vanilla-lite", "deepseek-v2-lite"}) {
    CAPTURE(name);
    const Run r = run_host({"info", "--model", (fs::path(ESFT_TEST_DATA_DIR) / "configs" / name).string()});
    expect_success(r);
    INFO("stdout: ", r.out);
    CHECK(contains(r.out, "deepseek_v2 (plugin deepseek_v2)"));
    CHECK(contains(r.out, "27 decoder layers, 26 MoE: 1,2,"));
    CHECK(contains(r.out, "64 routed per MoE layer, top-6, expert intermediate 1408"));
    CHECK(contains(r.out, "total 15,706,484,224; active per token 2,661,150,208"));
    CHECK(contains(r.out, "routed experts 14,394,851,328"));
    CHECK(contains(r.out, "shared experts 449,839,104"));
    CHECK(contains(r.out, "checkpoint       none"));
  }
}

// Every family's fixture, through the command line.
const char* const kFamilyFixtures[] = {"qwen3_moe", "qwen2_moe", "olmoe", "glm4_moe", "gpt_oss", "deepseek_v2"};

void check_forward_reproduces(const fs::path& fixture) {
  const auto model = fixture / "model", reference = fixture / "reference.safetensors";
  TempDir tmp;
  const auto out_path = tmp / "out.safetensors";
  // --device cpu: the reference is float32 on CPU; `auto` would pick bfloat16 on a CUDA machine.
  const Run r = run_host({"--device", "cpu", "forward", "--model", model.string(), "--inputs", reference.string(),
                          "--out", out_path.string()});
  expect_success(r);
  REQUIRE(fs::exists(out_path));
  CHECK(entries_of(tmp.path) == std::vector<std::string>{"out.safetensors"});  // no temporaries left

  const esft::SafetensorsFile out(out_path);
  const esft::SafetensorsFile ref(reference);

  // Exactly the reference's names for what forward writes: no layer or hidden state missing, none extra.
  std::set<std::string> expected_names, names;
  for (const auto& t : ref.tensors())
    if (in_forward_output(t.name)) expected_names.insert(t.name);
  for (const auto& t : out.tensors()) names.insert(t.name);
  CHECK(names == expected_names);
  REQUIRE(expected_names.count("logits"));

  const auto real = ref.load("attention_mask").reshape({-1}).to(at::kBool);  // non-padded rows b*T + t
  const double logits = max_diff(out.load("logits"), ref.load("logits"), real);
  CHECK(logits <= kValueTol);

  for (const auto& name : expected_names) {
    if (!out.find(name)) continue;  // reported by the name comparison above
    INFO("tensor: ", name);
    if (name.rfind("hidden_states.", 0) == 0) {
      CHECK(max_diff(out.load(name), ref.load(name), real) <= kValueTol);
    } else if (name.rfind("router_logits.", 0) == 0) {
      CHECK(max_diff(out.load(name), ref.load(name)) <= kValueTol);  // padded rows included
    } else if (name.rfind("topk_idx.", 0) == 0) {
      // Sets of experts per token; compare sorted indices at the non-padded rows.
      const auto ours = std::get<0>(out.load(name).to(at::kLong).sort(-1));
      const auto theirs = std::get<0>(ref.load(name).to(at::kLong).sort(-1));
      REQUIRE(ours.sizes() == theirs.sizes());
      CHECK((ours != theirs).any(-1).index({real}).sum().item<int64_t>() == 0);
    } else if (name.rfind("topk_weight.", 0) == 0) {
      // Weights in expert order, so that the order of the k choices does not matter.
      const auto layer = name.substr(std::strlen("topk_weight."));
      const auto ours_order = std::get<1>(out.load("topk_idx." + layer).sort(-1));
      const auto ref_order = std::get<1>(ref.load("topk_idx." + layer).sort(-1));
      CHECK(max_diff(out.load(name).gather(-1, ours_order), ref.load(name).gather(-1, ref_order), real) <= kValueTol);
    } else if (name == "ce_loss" || name == "aux_loss") {
      const double ours = out.load(name).to(at::kDouble).item<double>();
      const double theirs = ref.load(name).to(at::kDouble).item<double>();
      CHECK(std::abs(ours - theirs) <= kLossRelTol * std::abs(theirs));
    }
  }
}

TEST_CASE("cli: forward reproduces the transformers reference for every family") {
  for (const char* family : kFamilyFixtures) {
    SUBCASE(family) { check_forward_reproduces(fs::path(ESFT_TEST_DATA_DIR) / "hf" / family); }
  }
}

TEST_CASE("cli: global options are accepted before and after the command") {
  TempDir tmp;
  const auto before = tmp / "before.safetensors", after = tmp / "after.safetensors";
  const Run a = run_host({"--plugin", "qwen3_moe", "forward", "--model", kModel.string(), "--inputs",
                          kReference.string(), "--out", before.string()});
  expect_success(a);
  CHECK(fs::exists(before));

  const Run b = run_host({"forward", "--device", "cpu", "--model", kModel.string(), "--inputs", kReference.string(),
                          "--out", after.string()});
  expect_success(b);
  CHECK(fs::exists(after));
}

TEST_CASE("cli: generate prints the reference's greedy tokens for every family") {
  for (const char* family : kFamilyFixtures) {
    SUBCASE(family) {
      const auto fixture = fs::path(ESFT_TEST_DATA_DIR) / "hf" / family;
      const esft::SafetensorsFile ref(fixture / "reference.safetensors");
      const auto prompt = ref.load("generate.prompt");
      const auto expected = ref.load("generate.output");
      const auto new_tokens = expected.size(-1) - prompt.size(-1);
      REQUIRE(new_tokens == 10);
      const Run r = run_host({"--device", "cpu", "generate", "--model", (fixture / "model").string(), "--ids",
                              comma_joined(prompt), "--max-new-tokens", std::to_string(new_tokens)});
      expect_success(r);
      CHECK(r.out == comma_joined(expected) + "\n");
    }
  }
}

// ===============================================================================================================
// Bad model directories and checkpoints: exit 1, one line naming the problem, nothing written

TEST_CASE("cli: a missing model directory is named") {
  TempDir tmp;
  const auto missing = tmp / "no_such_model";
  expect_forward_error(missing, 1, {missing.string()});
  expect_error(run_host({"info", "--model", missing.string()}), 1, {missing.string()});
  expect_error(run_host({"generate", "--model", missing.string(), "--ids", "1,2"}), 1, {missing.string()});
}

TEST_CASE("cli: config.json without model_type") {
  TempDir tmp;
  const auto model = copy_model_with_config(tmp, [](json& config) { config.erase("model_type"); });
  expect_forward_error(model, 1, {"model_type", "config.json"});
  expect_error(run_host({"info", "--model", model.string()}), 1, {"model_type", "config.json"});
}

TEST_CASE("cli: a model_type that no plugin serves") {
  TempDir tmp;
  const auto model = copy_model_with_config(tmp, [](json& config) { config["model_type"] = "no_such_family"; });
  expect_forward_error(model, 1, {"model_type", "no_such_family"});
  expect_error(run_host({"info", "--model", model.string()}), 1, {"no_such_family"});
}

TEST_CASE("cli: a config value the family does not implement is refused") {
  TempDir tmp;
  const auto model = copy_model_with_config(tmp, [](json& config) { config["rope_parameters"]["rope_type"] = "longrope"; });
  expect_forward_error(model, 1, {"rope_type 'longrope'", "config.json"});
}

TEST_CASE("cli: a plugin with the wrong ABI version is refused, naming both versions") {
  TempDir tmp;
  const auto model = copy_model_with_config(tmp, [](json& config) { config["model_type"] = "wrong_abi_model"; });
  // Found through the config's model_type...
  expect_forward_error(model, 1, {"wrong_abi_model", "libesft_wrong_abi.so", wrong_abi_text()},
                       {"--plugin-dir", kWrongAbiDir.string()});
  // ...and named directly (the model is a good qwen3_moe one: the plugin must be refused before anything else).
  expect_forward_error(kModel, 1, {"libesft_wrong_abi.so", wrong_abi_text()},
                       {"--plugin", "wrong_abi", "--plugin-dir", kWrongAbiDir.string()});
  expect_error(run_host({"--plugin", "wrong_abi", "--plugin-dir", kWrongAbiDir.string(), "info", "--model",
                         kModel.string()}),
               1, {"libesft_wrong_abi.so", wrong_abi_text()});
}

TEST_CASE("cli: a truncated shard") {
  TempDir tmp;
  const auto model = copy_model(tmp);
  const auto shard = shard_of(model, "model.embed_tokens.weight");
  fs::resize_file(shard, 5);
  expect_forward_error(model, 1, {"truncated", shard.filename().string()});
  expect_error(run_host({"info", "--model", model.string()}), 1, {"truncated", shard.filename().string()});
}

TEST_CASE("cli: a shard whose header length runs past the end of the file") {
  TempDir tmp;
  const auto model = copy_model(tmp);
  const auto shard = shard_of(model, "model.embed_tokens.weight");
  const auto size = fs::file_size(shard);
  write_bytes(shard, u64_le(size + 1000) + read_bytes(shard).substr(8));  // same file, larger length prefix
  expect_forward_error(model, 1, {"header length " + std::to_string(size + 1000), shard.filename().string()});
}

TEST_CASE("cli: a shard whose data_offsets end beyond its data") {
  TempDir tmp;
  const auto model = copy_model(tmp);
  const std::string victim = "model.embed_tokens.weight";
  const auto shard = shard_of(model, victim);
  rewrite_safetensors(shard, [&](json& header, std::string& data) {
    auto& offsets = header[victim]["data_offsets"];
    const uint64_t n = offsets[1].get<uint64_t>() - offsets[0].get<uint64_t>();
    offsets = {data.size() + 64 - n, data.size() + 64};  // right size, 64 bytes past the end
  });
  expect_forward_error(model, 1, {victim, "out of range", shard.filename().string()});
}

TEST_CASE("cli: a shard whose byte range does not match dtype and shape") {
  TempDir tmp;
  const auto model = copy_model(tmp);
  const std::string victim = "model.embed_tokens.weight";
  const auto shard = shard_of(model, victim);
  rewrite_safetensors(shard, [&](json& header, std::string&) {
    REQUIRE(header[victim]["dtype"] == "F32");
    header[victim]["dtype"] = "F16";  // same offsets: now twice the bytes the shape needs
  });
  expect_forward_error(model, 1, {victim, "do not match", shard.filename().string()});
}

TEST_CASE("cli: an index that names a file outside the model directory") {
  TempDir tmp;
  const auto model = copy_model(tmp);
  const std::string victim = "model.embed_tokens.weight";
  // The outside file exists and is a valid shard: it must be refused for where it is, not for what it holds.
  fs::copy_file(shard_of(model, victim), tmp / "evil.safetensors");
  auto index = read_json(model / "model.safetensors.index.json");
  index["weight_map"][victim] = "../evil.safetensors";
  write_json(model / "model.safetensors.index.json", index);
  expect_forward_error(model, 1, {"../evil.safetensors", "outside"});
  expect_error(run_host({"info", "--model", model.string()}), 1, {"../evil.safetensors", "outside"});
}

TEST_CASE("cli: a tensor missing from the checkpoint is named") {
  const std::string victim = "model.layers.1.post_attention_layernorm.weight";

  SUBCASE("gone from both the index and its shard") {
    TempDir tmp;
    const auto model = copy_model(tmp);
    const auto shard = shard_of(model, victim);
    rewrite_safetensors(shard, [&](json& header, std::string&) { REQUIRE(header.erase(victim) == 1); });
    auto index = read_json(model / "model.safetensors.index.json");
    index["weight_map"].erase(victim);
    write_json(model / "model.safetensors.index.json", index);
    expect_forward_error(model, 1, {victim, "missing"});
  }
  SUBCASE("listed by the index but absent from its shard") {
    TempDir tmp;
    const auto model = copy_model(tmp);
    const auto shard = shard_of(model, victim);
    rewrite_safetensors(shard, [&](json& header, std::string&) { REQUIRE(header.erase(victim) == 1); });
    expect_forward_error(model, 1, {victim, shard.filename().string()});
  }
  SUBCASE("single-file checkpoint without it") {
    TempDir tmp;
    const auto model = tmp / "model";
    fs::create_directories(model);
    fs::copy_file(kModel / "config.json", model / "config.json");
    const auto checkpoint = esft::Checkpoint::open(kModel);
    esft::NamedTensors tensors;
    for (const auto& key : checkpoint.keys())
      if (key != victim) tensors.emplace_back(key, checkpoint.load(key));
    REQUIRE(tensors.size() + 1 == checkpoint.keys().size());
    esft::save_safetensors(model / "model.safetensors", tensors);
    expect_forward_error(model, 1, {victim, "missing"});
  }
}

// ===============================================================================================================
// Bad command lines: exit 2 (and 1 for an output folder that does not exist)

TEST_CASE("cli: an unknown command") {
  expect_error(run_host({"frobnicate"}), 2, {"frobnicate"});
}

TEST_CASE("cli: an unknown flag, after the command or before it") {
  expect_forward_error(kModel, 2, {"--bogus"}, {}, {"--bogus", "1"});
  expect_error(run_host({"--bogus", "plugins"}), 2, {"bogus"});
}

TEST_CASE("cli: a stray argument after the command") {
  expect_error(run_host({"plugins", "junk"}), 2, {"positional"});
  expect_error(run_host({"info", "--model", kModel.string(), "extra"}), 2, {"positional"});
}

TEST_CASE("cli: a missing required option") {
  expect_error(run_host({"forward", "--model", kModel.string()}), 2, {"--inputs"});
  expect_error(run_host({"forward", "--model", kModel.string(), "--inputs", kReference.string()}), 2, {"--out"});
  expect_error(run_host({"generate", "--model", kModel.string()}), 2, {"--ids"});
}

TEST_CASE("cli: an invalid --device") {
  expect_forward_error(kModel, 2, {"--device", "nonsense"}, {"--device", "nonsense"});
  expect_forward_error(kModel, 2, {"--device", "nonsense"}, {}, {"--device", "nonsense"});
  expect_error(run_host({"--device", "nonsense", "generate", "--model", kModel.string(), "--ids", "1,2"}), 2,
               {"nonsense"});
}

TEST_CASE("cli: forward --out in a directory that does not exist") {
  TempDir tmp;
  const auto missing_dir = tmp / "no_such_dir";
  const auto out = missing_dir / "out.safetensors";
  const Run r = run_host({"forward", "--model", kModel.string(), "--inputs", kReference.string(), "--out",
                          out.string()});
  expect_error(r, 1, {missing_dir.string()});
  CHECK_FALSE(fs::exists(missing_dir));
  CHECK(entries_of(tmp.path).empty());
}

// ===============================================================================================================
// tokenize

namespace {
const fs::path kQwen3Tokenizer = fs::path(ESFT_TEST_DATA_DIR) / "tokenizers" / "qwen3.tokenizer.json.gz";
}  // namespace

TEST_CASE("cli: tokenize --text and --ids round-trip a fixture line") {
  std::ifstream in(fs::path(ESFT_TEST_DATA_DIR) / "tok" / "qwen3.public.jsonl");
  std::string line;
  REQUIRE(std::getline(in, line));
  REQUIRE(std::getline(in, line));  // the second line: code with runs of spaces
  const auto record = json::parse(line);
  const auto ids = record["ids"].get<std::vector<int64_t>>();
  std::string joined;
  for (size_t i = 0; i < ids.size(); ++i) joined += (i ? "," : "") + std::to_string(ids[i]);

  const Run encoded = run_host({"tokenize", "--tokenizer", kQwen3Tokenizer.string(), "--text", record["text"].get<std::string>()});
  expect_success(encoded);
  CHECK(encoded.out == joined + "\n");
  const Run decoded = run_host({"tokenize", "--tokenizer", kQwen3Tokenizer.string(), "--ids", joined});
  expect_success(decoded);
  CHECK(decoded.out == record["text"].get<std::string>() + "\n");
}

TEST_CASE("cli: tokenize --input adds ids to every line, keeping the other fields, and --decode inverts it") {
  TempDir tmp;
  const auto in = tmp / "in.jsonl", out = tmp / "out.jsonl", back = tmp / "back.jsonl";
  std::ofstream(in) << R"({"id": 7, "text": "Hello, world!"})" << "\n\n" << R"({"text": "<|im_start|>user\nこんにちは"})" << "\n";
  expect_success(run_host({"tokenize", "--tokenizer", kQwen3Tokenizer.string(), "--input", in.string(), "--out", out.string()}));
  std::ifstream lines(out);
  std::string first, second, extra;
  REQUIRE(std::getline(lines, first));
  REQUIRE(std::getline(lines, second));
  CHECK_FALSE(std::getline(lines, extra));  // the blank line is not copied
  CHECK(first.rfind(R"({"id":7,"text":"Hello, world!","ids":[)", 0) == 0);  // field order kept
  CHECK(json::parse(second)["ids"][0] == 151644);

  expect_success(run_host({"tokenize", "--tokenizer", kQwen3Tokenizer.string(), "--input", out.string(), "--out",
                           back.string(), "--decode", "--skip-special-tokens"}));
  std::ifstream decoded(back);
  REQUIRE(std::getline(decoded, first));
  REQUIRE(std::getline(decoded, second));
  CHECK(json::parse(first)["text"] == "Hello, world!");
  CHECK(json::parse(second)["text"] == "user\nこんにちは");
}

TEST_CASE("cli: tokenize names the file and line of bad input and leaves no output") {
  TempDir tmp;
  const auto in = tmp / "in.jsonl", out = tmp / "out.jsonl";
  std::ofstream(in) << R"({"text": "fine"})" << "\n" << R"({"text": 3})" << "\n";
  expect_error(run_host({"tokenize", "--tokenizer", kQwen3Tokenizer.string(), "--input", in.string(), "--out", out.string()}),
               1, {"in.jsonl:2", "\"text\" must be a string"});
  CHECK_FALSE(fs::exists(out));
  std::ofstream(in) << "not json\n";
  expect_error(run_host({"tokenize", "--tokenizer", kQwen3Tokenizer.string(), "--input", in.string(), "--out", out.string()}),
               1, {"in.jsonl:1", "malformed JSON"});
  expect_error(run_host({"tokenize", "--tokenizer", (tmp / "nothing").string(), "--text", "a"}), 1, {"nothing"});
  expect_error(run_host({"tokenize", "--tokenizer", kQwen3Tokenizer.string()}), 2, {"--text", "--input"});
}

// ===============================================================================================================
// chat

TEST_CASE("cli: chat prints the Qwen3 template's rendering and, with --ids, its token ids") {
  std::ifstream in(fs::path(ESFT_TEST_DATA_DIR) / "tok" / "qwen3.chat.jsonl");
  std::string line;
  for (int i = 0; i < 8; ++i) REQUIRE(std::getline(in, line));  // record 8: system, user, assistant; thinking off
  const auto record = json::parse(line);
  REQUIRE(record["add_generation_prompt"] == true);
  REQUIRE(record["enable_thinking"] == false);

  TempDir tmp;
  const auto model = tmp / "model";
  fs::create_directories(model);
  fs::copy_file(kModel / "config.json", model / "config.json");
  fs::copy_file(kQwen3Tokenizer, model / "tokenizer.json");  // gzipped content under the plain name is read too
  std::ofstream(tmp / "messages.json") << json{{"messages", record["messages"]}}.dump();

  const std::vector<std::string> common = {"chat", "--model", model.string(), "--messages", (tmp / "messages.json").string(),
                                           "--add-generation-prompt", "--enable-thinking", "false"};
  const Run text = run_host(common);
  expect_success(text);
  CHECK(text.out == record["rendered"].get<std::string>());

  auto with_ids = common;
  with_ids.push_back("--ids");
  const Run ids = run_host(with_ids);
  expect_success(ids);
  std::string expected;
  for (const auto& id : record["ids"]) expected += (expected.empty() ? "" : ",") + std::to_string(id.get<int64_t>());
  CHECK(ids.out == expected + "\n");

  std::ofstream(tmp / "bad.json") << R"([{"role": "robot", "content": "x"}])";
  expect_error(run_host({"chat", "--model", model.string(), "--messages", (tmp / "bad.json").string()}), 1,
               {"bad.json", "message 1", "robot"});
}

TEST_CASE("cli: generate --prompt prints the decoded text of the tokens generate --ids produces") {
  TempDir tmp;
  const auto model = tmp / "model";
  fs::create_directories(model);
  for (const auto& f : fs::directory_iterator(kModel)) fs::copy_file(f.path(), model / f.path().filename());
  fs::copy_file(kQwen3Tokenizer, model / "tokenizer.json");
  // "1 2 3" is 16,220,17,220,18 in Qwen3's vocabulary: all inside the tiny model's 384 ids.
  const Run by_ids = run_host({"--device", "cpu", "generate", "--model", model.string(), "--ids", "16,220,17,220,18",
                               "--max-new-tokens", "6"});
  expect_success(by_ids);
  const std::string prefix = "16,220,17,220,18,";
  REQUIRE(by_ids.out.rfind(prefix, 0) == 0);
  const std::string generated = by_ids.out.substr(prefix.size(), by_ids.out.size() - prefix.size() - 1);
  const Run decoded = run_host({"tokenize", "--tokenizer", model.string(), "--ids", generated});
  expect_success(decoded);

  const Run by_text = run_host({"--device", "cpu", "generate", "--model", model.string(), "--prompt", "1 2 3",
                                "--max-new-tokens", "6"});
  expect_success(by_text);
  CHECK(by_text.out == decoded.out);

  // A conversation renders to Qwen3's special tokens, which this tiny model's vocabulary lacks: a clear error.
  std::ofstream(tmp / "chat.json") << R"([{"role": "user", "content": "hi"}])";
  expect_error(run_host({"--device", "cpu", "generate", "--model", model.string(), "--messages", (tmp / "chat.json").string()}), 1,
               {"151644", "vocabulary of 384"});
  expect_error(run_host({"generate", "--model", model.string(), "--prompt", "a", "--ids", "1"}), 2, {"exactly one"});
}

// ===============================================================================================================
// data

TEST_CASE("cli: data reports samples, tokens and packed rows, writes the rows, and names a bad line") {
  TempDir tmp;
  const auto model = tmp / "model";
  fs::create_directories(model);
  fs::copy_file(kModel / "config.json", model / "config.json");
  fs::copy_file(kQwen3Tokenizer, model / "tokenizer.json");
  fs::copy_file(fs::path(ESFT_TEST_DATA_DIR) / "tokenizers" / "qwen3.tokenizer_config.json", model / "tokenizer_config.json");
  std::ofstream(tmp / "train.jsonl") << R"({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})"
                                     << "\n" << R"({"prompt": "1+1=", "completion": "2"})" << "\n"
                                     << R"({"text": "Plain text."})" << "\n";
  const auto rows = tmp / "rows.jsonl";
  const Run r = run_host({"data", "--model", model.string(), "--input", (tmp / "train.jsonl").string(), "--seq-length", "8",
                          "--eval-fraction", "0", "--out", rows.string()});
  expect_success(r);
  CHECK(contains(r.out, "samples          3 (3 train, 0 held out)"));
  std::ifstream in(rows);
  int n = 0;
  for (std::string line; std::getline(in, line); ++n) {
    const auto row = json::parse(line);
    CHECK(row["ids"].size() == 8);
    CHECK(row["labels"].size() == 8);
    CHECK(row["attention_mask"].size() == 8);
  }
  CHECK(n >= 2);

  const Run unpacked = run_host({"data", "--model", model.string(), "--input", (tmp / "train.jsonl").string(),
                                 "--seq-length", "8", "--no-packing"});
  expect_error(unpacked, 1, {"train.jsonl:1", "more than seq_length 8"});

  std::ofstream(tmp / "bad.jsonl") << R"({"text": "ok"})" << "\n" << R"({"messages": [{"role": "user"}]})" << "\n";
  expect_error(run_host({"data", "--model", model.string(), "--input", (tmp / "bad.jsonl").string()}), 1,
               {"bad.jsonl:2", "message 1", "content"});
}

// ===============================================================================================================
// select

TEST_CASE("cli: select writes the reference's released configs from its logs, and refuses bad input") {
  TempDir tmp;
  const auto esft_data = fs::path(ESFT_TEST_DATA_DIR) / "esft";
  const Run r = run_host({"select", "--scores", (esft_data / "intent").string() + "," + (esft_data / "law").string(),
                          "--top-k", "6", "--num-experts", "64", "--out-dir", tmp.path.string()});
  expect_success(r);
  CHECK(contains(r.out, "intent: 26 MoE layers, 64 experts, top-6"));
  CHECK(contains(r.out, "% of expert parameters"));
  for (const char* task : {"intent", "law"}) {
    CHECK(read_json(tmp / (std::string(task) + ".expert_config.json")) ==
          read_json(esft_data / (std::string(task) + ".expert_config.json")));
  }
  expect_error(run_host({"select", "--scores", (esft_data / "law").string(), "--top-p", "1.5", "--out", (tmp / "x.json").string()}),
               2, {"--top-p"});
  expect_error(run_host({"select", "--scores", (esft_data / "law").string(), "--out", (tmp / "y.json").string()}), 1,
               {"top_k and num_experts"});
  CHECK_FALSE(fs::exists(tmp / "y.json"));
}

// ===============================================================================================================
// scores

TEST_CASE("cli: scores counts every real token once per MoE layer, honours the budget, and its logs select alike") {
  TempDir tmp;
  const auto model = tmp / "model";
  fs::create_directories(model);
  for (const auto& f : fs::directory_iterator(kModel)) fs::copy_file(f.path(), model / f.path().filename());
  const auto tiny_tokenizer = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path() / "examples" / "tiny-tokenizer";
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(tiny_tokenizer / f, model / f);
  const auto data = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path() / "examples" / "train.jsonl";

  const Run all = run_host({"--device", "cpu", "scores", "--model", model.string(), "--data", data.string(), "--out",
                            (tmp / "all").string(), "--batch-size", "3", "--legacy-logs"});
  expect_success(all);
  const auto scores = read_json(tmp / "all" / "scores.json");
  CHECK(scores["format"] == "esft-scores");
  CHECK(scores["layers"].size() == 3);
  const int64_t tokens = scores["tokens"].get<int64_t>();
  CHECK(tokens > 100);
  for (const auto& [layer, stats] : scores["layers"].items()) {
    int64_t slots = 0;
    for (const auto& c : stats["token_count"]) slots += c.get<int64_t>();
    CHECK(slots == 2 * tokens);  // top-2: every real token counted once per layer, padding never
    double mass = 0;
    for (const auto& g : stats["gate_sum"]) mass += g.get<double>();
    CHECK(mass == doctest::Approx(static_cast<double>(tokens)).epsilon(1e-6));  // qwen3 renormalises its top-k
  }
  // The same counts batch by batch or one sample at a time.
  expect_success(run_host({"--device", "cpu", "scores", "--model", model.string(), "--data", data.string(), "--out",
                           (tmp / "one").string(), "--batch-size", "1"}));
  CHECK(read_json(tmp / "one" / "scores.json")["layers"]["1"]["token_count"] == scores["layers"]["1"]["token_count"]);

  // A small budget stops after the sample that reaches it.
  expect_success(run_host({"--device", "cpu", "scores", "--model", model.string(), "--data", data.string(), "--out",
                           (tmp / "some").string(), "--n-sample-tokens", "60"}));
  const int64_t some = read_json(tmp / "some" / "scores.json")["tokens"].get<int64_t>();
  CHECK(some >= 60);
  CHECK(some < tokens);

  // The legacy logs give the same token selection as scores.json.
  fs::create_directories(tmp / "logs");
  for (int layer = 0; layer < 3; ++layer) {
    const auto name = "expert_weights_" + std::to_string(layer) + ".txt";
    fs::copy_file(tmp / "all" / name, tmp / "logs" / name);
  }
  expect_success(run_host({"select", "--scores", (tmp / "all").string(), "--top-p", "0.5", "--out", (tmp / "a.json").string()}));
  expect_success(run_host({"select", "--scores", (tmp / "logs").string(), "--top-k", "2", "--num-experts", "8", "--top-p",
                           "0.5", "--out", (tmp / "b.json").string()}));
  CHECK(read_json(tmp / "a.json") == read_json(tmp / "b.json"));
}

TEST_CASE("cli: init writes a tinymoe model that info, forward and generate load: bad configs leave nothing") {
  TempDir dir;
  const auto tokenizer = (fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path() / "examples" / "tiny-tokenizer").string();
  const auto config = dir / "model.toml";
  write_bytes(config, "hidden_size = 32\nnum_hidden_layers = 2\nnum_attention_heads = 2\nmax_position_embeddings = 64\n"
                      "moe_layers = [1]\nnum_experts = 4\ncapacity_factor = 1.0\n");
  const auto model = dir / "model";
  const Run init = run_host({"--plugin", "tinymoe_boids", "init", "--config", config.string(), "--tokenizer", tokenizer,
                             "--out", model.string(), "--seed", "5"});
  expect_success(init);
  CHECK(entries_of(model) ==
        std::vector<std::string>{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"});
  {
    const esft::SafetensorsFile weights(model / "model.safetensors");
    CHECK(weights.load("blocks.1.moe.experts.b1").abs().max().item<double>() == 0);  // biases start at 0
    CHECK(weights.load("blocks.1.moe.router.bias").abs().max().item<double>() == 0);
    CHECK(weights.load("ln_f.weight").eq(1).all().item<bool>());
    CHECK(weights.load("blocks.1.moe.experts.w1").std().item<double>() == doctest::Approx(0.02).epsilon(0.1));
  }
  const Run info = run_host({"info", "--model", model.string()});
  expect_success(info);
  CHECK(contains(info.out, "tinymoe (plugin tinymoe_boids)"));
  CHECK(contains(info.out, "1 MoE: 1"));
  const auto forward = dir / "forward.safetensors";
  expect_success(run_host({"forward", "--model", model.string(), "--inputs",
                           (fs::path(ESFT_TEST_DATA_DIR) / "hf" / "qwen3_moe" / "reference.safetensors").string(),
                           "--out", forward.string()}));
  const esft::SafetensorsFile out(forward);
  CHECK(out.find("dropped.1"));
  CHECK(out.find("router_logits.1"));
  CHECK_FALSE(out.find("dropped.0"));  // block 0 is dense
  const Run again = run_host({"--plugin", "tinymoe_boids", "init", "--config", config.string(), "--tokenizer",
                              tokenizer, "--out", (dir / "second").string() + "/", "--seed", "5"});
  expect_success(again);
  CHECK(read_bytes(model / "model.safetensors") == read_bytes(dir / "second" / "model.safetensors"));  // seeded

  write_bytes(config, "hidden_size = 32\nnum_hidden_layers = 2\nnum_attention_heads = 2\nmax_position_embeddings = 64\n"
                      "num_experts = 4\ncapacity_factor = 0\n");
  const auto refused = dir / "refused";
  expect_error(run_host({"--plugin", "tinymoe_boids", "init", "--config", config.string(), "--tokenizer", tokenizer,
                         "--out", refused.string()}),
               1, {"capacity_factor must be > 0"});
  CHECK_FALSE(fs::exists(refused));
  expect_error(run_host({"init", "--config", config.string(), "--tokenizer", tokenizer, "--out", refused.string()}), 2,
               {"init needs --plugin"});
}

TEST_CASE("cli: train --method pretrain lowers the validation PPL on the bundled TinyStories: the model it writes loads") {
  TempDir dir;
  const fs::path root = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path();
  const auto config = dir / "model.toml";
  write_bytes(config, "hidden_size = 32\nnum_hidden_layers = 2\nnum_attention_heads = 2\nmax_position_embeddings = 64\n"
                      "num_experts = 4\ncapacity_factor = 1.25\nrouter_jitter = 0.01\n");
  const auto model = dir / "init";
  expect_success(run_host({"--plugin", "tinymoe_boids", "init", "--config", config.string(), "--tokenizer",
                           (root / "examples" / "tiny-tokenizer").string(), "--out", model.string()}));
  const auto settings = dir / "train.toml";
  write_bytes(settings, "steps = 40\nbatch_size = 8\nseq_length = 32\nwarmup_steps = 4\neval_steps = 20\n"
                        "max_eval_rows = 64\nlearning_rate = 2e-3\nrouter_mode = \"boids\"\n");
  const auto out = dir / "run";
  const std::vector<std::string> args = {"train", "--method", "pretrain", "--model", model.string(), "--data",
                                         (root / "data" / "tinystories" / "train.jsonl.gz").string(), "--eval-data",
                                         (root / "data" / "tinystories" / "valid.jsonl.gz").string(), "--config",
                                         settings.string(), "--out", out.string()};
  const Run train = run_host(args);
  expect_success(train);
  CHECK(contains(train.out, "every parameter"));
  CHECK(contains(train.out, "routers boids"));
  // metrics.csv: evals at 20 and 40, both below the untrained model's PPL, the second below the first.
  std::ifstream csv(out / "metrics.csv");
  std::vector<double> ppl;
  for (std::string line; std::getline(csv, line);) {
    if (line.rfind("step", 0) == 0) continue;
    std::stringstream row(line);
    std::string cell;
    for (int i = 0; i < 5; ++i) std::getline(row, cell, ',');
    ppl.push_back(std::stod(cell));
  }
  REQUIRE(ppl.size() == 2);
  CHECK(ppl[1] < ppl[0]);
  const auto summary = nlohmann::json::parse(read_bytes(out / "summary.json"));
  CHECK(summary["val_ppl"].get<double>() == doctest::Approx(ppl[1]).epsilon(1e-4));  // the best is the last
  CHECK(summary["eval_routing"]["expert_share"].size() == 2);  // both blocks are MoE
  CHECK(summary["train_routing"]["boids_cohesion"].is_number());
  expect_success(run_host({"info", "--model", (out / "model").string()}));
  const Run generate = run_host({"generate", "--model", (out / "model").string(), "--prompt", "Once upon a time",
                                 "--max-new-tokens", "8"});
  expect_success(generate);

  // An expert config has no place in pretraining; an unknown method is named.
  expect_error(run_host({"train", "--method", "pretrain", "--model", model.string(), "--expert-config",
                         config.string(), "--data", config.string(), "--out", (dir / "x").string()}),
               2, {"is not used by --method pretrain"});
  expect_error(run_host({"train", "--method", "lora2", "--model", model.string(), "--data", config.string(), "--out",
                         (dir / "x").string()}),
               2, {"not a training method"});
  CHECK_FALSE(fs::exists(dir / "x"));
}
