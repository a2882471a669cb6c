// `train --method lora` and `--method full` through the command line on the bundled tiny model: exact resumption,
// the LoRA adapter through generate, eval and merge, the full model's checkpoint, and what they refuse.
#include "doctest_torch.h"

#include <fstream>

#include "cli_support.h"
#include "esft/io/safetensors.h"

using namespace cli_support;

namespace {

const fs::path kExamples = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path() / "examples";
const fs::path kModel = kExamples / "tiny-model";
const fs::path kData = kExamples / "train.jsonl";

fs::path write_config(const TempDir& tmp, const std::string& extra = "") {
  const auto path = tmp / "train.toml";
  std::ofstream(path) << "batch_size = 2\ngradient_accumulation_steps = 1\nseq_length = 64\nsave_steps = 2\n"
                         "eval_steps = 0\nlearning_rate = 0.005\nlora_rank = 4\nlora_dropout = 0.1\n"
                      << extra;
  return path;
}

Run train(const std::string& method, const fs::path& config, const fs::path& out, int steps, bool resume = false) {
  std::vector<std::string> args = {"train", "--method", method, "--model", kModel.string(), "--data", kData.string(),
                                   "--config", config.string(), "--out", out.string(), "--steps", std::to_string(steps)};
  if (resume) args.push_back("--resume");
  return run_host(args);
}

}  // namespace

TEST_CASE("cli methods: lora and full runs resume exactly (4 steps straight equal 2, --resume, 2 more)") {
  TempDir tmp;
  const auto config = write_config(tmp);
  for (const auto& run : {std::pair<std::string, std::string>{"lora", "adapter/adapter_model.safetensors"},
                          {"full", "model/model.safetensors"}}) {
    const std::string& method = run.first;  // not a structured binding: doctest's CAPTURE captures it
    const std::string& file = run.second;
    CAPTURE(method);
    const auto straight = tmp / (method + "-straight"), split = tmp / (method + "-split");
    expect_success(train(method, config, straight, 4));
    expect_success(train(method, config, split, 2));
    const auto resumed = train(method, config, split, 4, true);
    expect_success(resumed);
    CHECK(contains(resumed.out, "resumed    at step 2"));
    CHECK(read_bytes(straight / file) == read_bytes(split / file));
  }
}

TEST_CASE("cli methods: a LoRA adapter generates as its merge does, and eval takes it") {
  TempDir tmp;
  const auto config = write_config(tmp, "lora_targets = [\"all-linear\", \"gate\", \"experts\"]\n");
  // Dropout does not go with expert targets: a config that asks for both is refused before anything is written.
  expect_error(train("lora", config, tmp / "refused", 2), 1, {"takes no dropout"});
  CHECK_FALSE(fs::exists(tmp / "refused"));

  const auto good = tmp / "good.toml";
  std::ofstream(good) << "batch_size = 2\ngradient_accumulation_steps = 1\nseq_length = 64\nlearning_rate = 0.02\n"
                         "lora_rank = 2\nlora_targets = [\"all-linear\", \"gate\", \"experts\"]\n";
  const auto run = train("lora", good, tmp / "run", 4);
  expect_success(run);
  CHECK(contains(run.out, "PEFT LoRA"));
  const auto adapter = tmp / "run" / "adapter";
  const auto cfg = nlohmann::json::parse(read_bytes(adapter / "adapter_config.json"));
  CHECK(cfg["peft_type"] == "LORA");
  CHECK(cfg["r"] == 2);
  CHECK(cfg["target_parameters"].size() == 9);  // 3 routers, 3 gate_up and 3 down banks

  const auto merged = tmp / "merged";
  expect_success(run_host({"merge", "--model", kModel.string(), "--adapter", adapter.string(), "--out", merged.string()}));
  const Run with_adapter = run_host({"generate", "--model", kModel.string(), "--adapter", adapter.string(), "--ids",
                                     "5,9,13,2", "--max-new-tokens", "12"});
  const Run on_merge = run_host({"generate", "--model", merged.string(), "--ids", "5,9,13,2", "--max-new-tokens", "12"});
  const Run on_base = run_host({"generate", "--model", kModel.string(), "--ids", "5,9,13,2", "--max-new-tokens", "12"});
  expect_success(with_adapter);
  expect_success(on_merge);
  CHECK(contains(with_adapter.err, "folded 21 LoRA pairs"));
  CHECK(with_adapter.out == on_merge.out);
  CHECK(with_adapter.out != on_base.out);
  const Run eval = run_host({"eval", "--model", kModel.string(), "--adapter", adapter.string(), "--data", kData.string()});
  expect_success(eval);

  // A LoRA adapter belongs on its base: another model's config is refused by hash.
  const auto other = tmp / "other-base";
  fs::create_directories(other);
  for (const auto& e : fs::directory_iterator(kModel)) fs::copy(e.path(), other / e.path().filename());
  std::ofstream(other / "config.json", std::ios::app) << "\n";
  expect_error(run_host({"generate", "--model", other.string(), "--adapter", adapter.string(), "--ids", "5"}), 1,
               {"trained on another base model"});
}

TEST_CASE("cli methods: full fine-tuning writes a loadable checkpoint and refuses an expert config") {
  TempDir tmp;
  const auto config = write_config(tmp);
  const auto run = train("full", config, tmp / "full", 2);
  expect_success(run);
  CHECK(contains(run.out, "every parameter (full fine-tuning)"));
  const auto model = tmp / "full" / "model";
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"}) CHECK(fs::exists(model / f));
  const esft::SafetensorsFile trained(model / "model.safetensors");
  CHECK(trained.find("model.layers.0.mlp.experts.3.down_proj.weight") != nullptr);
  expect_success(run_host({"generate", "--model", model.string(), "--ids", "5,9", "--max-new-tokens", "4"}));

  // A whole model is not an adapter: merge says what it is.
  expect_error(run_host({"merge", "--model", kModel.string(), "--adapter", model.string(), "--out", (tmp / "m").string()}),
               1, {"it is a complete model"});
  CHECK_FALSE(fs::exists(tmp / "m"));
  expect_error(run_host({"train", "--method", "full", "--model", kModel.string(), "--expert-config",
                         config.string(), "--data", kData.string(), "--out", (tmp / "x").string()}),
               2, {"--expert-config is not used by --method full"});
  CHECK_FALSE(fs::exists(tmp / "x"));
}

TEST_CASE("cli methods: LoRA settings out of range and targets that match nothing are refused before any output") {
  TempDir tmp;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"lora_rank = 0\n", "lora_rank must be >= 1"},
      {"lora_targets = [\"qproj\"]\n", "LoRA target 'qproj' matches no linear layer"},
      {"lora_targets = [\"k_proj\"]\nlora_rank = 100\n", "exceeds the target's dimensions"},
      {"lora_dropout = 1.5\n", "lora_dropout must be in [0, 1)"}};
  for (const auto& c : cases) {
    const std::string& toml = c.first;
    const std::string& needle = c.second;
    CAPTURE(toml);
    const auto config = tmp / "bad.toml";
    std::ofstream(config) << "steps = 2\n" << toml;
    expect_error(run_host({"train", "--method", "lora", "--model", kModel.string(), "--data", kData.string(), "--config",
                           config.string(), "--out", (tmp / "out").string()}),
                 1, {needle});
    CHECK_FALSE(fs::exists(tmp / "out"));
  }
}
