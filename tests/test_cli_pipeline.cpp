// The ESFT pipeline through esft-host, as the README's main job runs it: scores -> select -> params -> train ->
// eval -> merge on the tiny Qwen3-MoE with the bundled tokenizer and task; interruption and --resume; and the bad
// inputs each command must refuse with one error line and no output left behind.
#include <ATen/ATen.h>
#include "doctest_torch.h"
#include <nlohmann/json.hpp>

#include <signal.h>

#include <csignal>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "cli_support.h"
#include "esft/io/safetensors.h"
#include "test_support.h"

using namespace cli_support;
using test_support::TempDir;
using test_support::write_bytes;
using nlohmann::json;

namespace {

const fs::path kSource = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path();  // the repository
const fs::path kTask = kSource / "examples" / "tiny-task";


// A small, fast training config (written next to the run).
fs::path small_config(const TempDir& dir, int steps) {
  const auto path = dir / "train.toml";
  std::ofstream(path) << "learning_rate = 1e-2\nsteps = " << steps
                      << "\nbatch_size = 2\ngradient_accumulation_steps = 1\nseq_length = 128\nsave_steps = 2\n"
                         "eval_steps = 0\nlog_steps = 1\n";
  return path;
}


std::string expert_config_text(const std::string& experts) {
  return R"({"experts": )" + experts + R"(, "shared_experts": false, "non_expert_modules": false})";
}

// The first line of stdout that starts with `prefix`.
std::string line_starting(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) return line;
  return "";
}

}  // namespace

TEST_CASE("cli pipeline: scores, select, params, train, eval and merge on the tiny model and task") {
  TempDir dir;
  const auto model = tiny_task_model(dir);
  expect_success(run_host({"scores", "--model", model.string(), "--data", (kTask / "train.jsonl").string(), "--out",
                           (dir / "scores").string(), "--batch-size", "8"}));
  const Run select = run_host({"select", "--scores", (dir / "scores").string(), "--top-p", "0.5", "--out",
                               (dir / "expert_config.json").string()});
  expect_success(select);
  CHECK(contains(select.out, "layer   0:"));

  // The pictures and the numbers behind them: routing.csv holds scores.json's counts and shares, selection.csv marks
  // exactly the experts of expert_config.json.
  for (const auto& picture : {dir / "scores" / "routing", dir / "expert_config.selection", dir / "scores.coverage"}) {
    CHECK_MESSAGE(fs::file_size(picture.string() + ".png") > 2000, picture);
    CHECK_MESSAGE(fs::exists(picture.string() + ".svg"), picture);
  }
  {
    const auto scores = json::parse(test_support::read_bytes(dir / "scores" / "scores.json"));
    std::ifstream csv(dir / "scores" / "routing.csv");
    std::string line;
    std::getline(csv, line);
    CHECK(line == "layer,expert,token_count,token_share,gate_sum,gate_share");
    int rows = 0;
    for (; std::getline(csv, line); ++rows) {
      std::stringstream fields(line);
      std::vector<std::string> f;
      for (std::string cell; std::getline(fields, cell, ',');) f.push_back(cell);
      REQUIRE(f.size() == 6);
      const auto& layer = scores["layers"][f[0]];
      const auto e = std::stoul(f[1]);
      const double tokens = layer["tokens"].get<double>();
      CHECK(std::stoll(f[2]) == layer["token_count"][e].get<int64_t>());
      CHECK(std::stod(f[3]) == doctest::Approx(layer["token_count"][e].get<double>() / (2 * tokens)).epsilon(1e-9));
      CHECK(std::stod(f[5]) == doctest::Approx(layer["gate_sum"][e].get<double>() / tokens).epsilon(1e-9));
    }
    CHECK(rows == 3 * 8);
    const auto chosen = json::parse(test_support::read_bytes(dir / "expert_config.json"))["experts"];
    std::ifstream selection(dir / "expert_config.selection.csv");
    std::getline(selection, line);
    int marked = 0, listed = 0;
    for (const auto& [layer, experts] : chosen.items()) listed += static_cast<int>(experts.size());
    while (std::getline(selection, line)) {
      std::stringstream fields(line);
      std::vector<std::string> f;
      for (std::string cell; std::getline(fields, cell, ',');) f.push_back(cell);
      REQUIRE(f.size() == 7);
      const auto& experts = chosen[f[1]];
      const bool in_config = std::find(experts.begin(), experts.end(), std::stoi(f[3])) != experts.end();
      CHECK(f[6] == (in_config ? "1" : "0"));
      marked += f[6] == "1";
    }
    CHECK(marked == listed);
  }

  const Run params = run_host({"params", "--model", model.string(), "--expert-config",
                               (dir / "expert_config.json").string(), "--format", "json"});
  expect_success(params);
  const auto names = json::parse(params.out);
  int64_t selected = 0;
  const auto config = json::parse(test_support::read_bytes(dir / "expert_config.json"));
  for (const auto& [layer, experts] : config["experts"].items()) selected += static_cast<int64_t>(experts.size());
  CHECK(selected > 0);
  CHECK(static_cast<int64_t>(names["tensors"].size()) == 3 * selected);

  const Run train = run_host({"train", "--model", model.string(), "--expert-config", (dir / "expert_config.json").string(),
                              "--data", (kTask / "train.jsonl").string(), "--config", small_config(dir, 4).string(),
                              "--out", (dir / "run").string()});
  expect_success(train);
  CHECK(contains(train.out, "loss curve"));
  CHECK(contains(train.out, "adapter    "));
  int losses = 0;
  for (const auto& line : read_json_lines(dir / "run" / "metrics.jsonl")) losses += line.contains("loss");
  CHECK(losses == 4);
  CHECK(fs::file_size(dir / "run" / "loss.png") > 2000);
  CHECK(test_support::read_bytes(dir / "run" / "loss.csv").rfind("step,loss,lr,eval_loss\n1,", 0) == 0);
  // The adapter holds exactly the tensors params named.
  const esft::SafetensorsFile adapter(dir / "run" / "adapter" / "model.safetensors");
  std::set<std::string> in_adapter, named;
  for (const auto& t : adapter.tensors()) in_adapter.insert(t.name);
  for (const auto& n : names["tensors"]) named.insert(n.get<std::string>());
  CHECK(in_adapter == named);

  // The same run writing the ESFT reference's format: expert_cfg.json and the same tensors, bit for bit.
  expect_success(run_host({"train", "--model", model.string(), "--expert-config", (dir / "expert_config.json").string(),
                           "--data", (kTask / "train.jsonl").string(), "--config", small_config(dir, 4).string(),
                           "--out", (dir / "run-reference").string(), "--adapter-format", "reference"}));
  CHECK(json::parse(test_support::read_bytes(dir / "run-reference" / "adapter" / "expert_cfg.json")) == config);
  CHECK_FALSE(fs::exists(dir / "run-reference" / "adapter" / "esft_adapter.json"));
  const esft::SafetensorsFile reference(dir / "run-reference" / "adapter" / "model.safetensors");
  CHECK(reference.tensors().size() == adapter.tensors().size());
  for (const auto& t : adapter.tensors()) {
    CAPTURE(t.name);
    REQUIRE(reference.find(t.name));
    CHECK(at::equal(reference.load(t.name), adapter.load(t.name)));
  }

  // Greedy completions through the adapter and through the merged checkpoint are the same.
  const std::vector<std::string> eval_args = {"--data", (kTask / "eval.jsonl").string(), "--metric", "exact",
                                              "--enable-thinking", "false", "--max-new-tokens", "6", "--limit", "6"};
  auto with = [&](std::vector<std::string> head) {
    head.insert(head.end(), eval_args.begin(), eval_args.end());
    return head;
  };
  const Run adapted = run_host(with({"eval", "--model", model.string(), "--adapter", (dir / "run" / "adapter").string(),
                                     "--out", (dir / "completions.jsonl").string()}));
  expect_success(adapted);
  CHECK(read_json_lines(dir / "completions.jsonl").size() == 6);
  expect_success(run_host({"merge", "--model", model.string(), "--adapter", (dir / "run" / "adapter").string(), "--out",
                           (dir / "merged").string()}));
  const Run merged = run_host(with({"eval", "--model", (dir / "merged").string()}));
  expect_success(merged);
  CHECK(line_starting(merged.out, "exact").substr(0, 12) == line_starting(adapted.out, "exact").substr(0, 12));

  const Run loss = run_host({"eval", "--model", model.string(), "--adapter", (dir / "run" / "adapter").string(),
                             "--data", (kTask / "train.jsonl").string(), "--metric", "loss"});
  expect_success(loss);
  CHECK(contains(loss.out, "perplexity"));

  // One page with every picture of the folder.
  const Run report = run_host({"report", dir.path.string()});
  expect_success(report);
  const auto html = test_support::read_bytes(dir / "report.html");
  for (const char* picture : {"scores/routing.png", "expert_config.selection.png", "scores.coverage.png", "run/loss.png",
                              "run-reference/loss.png"}) {
    CHECK_MESSAGE(contains(html, std::string("<code>") + picture + "</code>"), picture);
  }
  CHECK(html.find("http") == std::string::npos);
}

TEST_CASE("cli pipeline: SIGINT saves a checkpoint and exits, --resume finishes the run as if uninterrupted") {
  TempDir dir;
  const auto model = tiny_task_model(dir);
  write_bytes(dir / "ec.json", expert_config_text(R"({"0": [1, 2], "1": [3], "2": [0, 7]})"));
  const auto config = small_config(dir, 400);
  const std::vector<std::string> args = {"train", "--model", model.string(), "--expert-config", (dir / "ec.json").string(),
                                         "--data", (kTask / "train.jsonl").string(), "--config", config.string()};
  auto with_out = [&](const std::string& out, std::vector<std::string> extra = {}) {
    auto a = args;
    a.push_back("--out");
    a.push_back((dir / out).string());
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  // Start, wait for the first steps in metrics.jsonl, interrupt.
  std::thread interrupter([&] {
    const auto metrics = dir / "run" / "metrics.jsonl";
    for (int i = 0; i < 600 && read_json_lines(metrics).size() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    signal_host(SIGINT, (dir / "run").string());
  });
  const Run interrupted = run_host(with_out("run"));
  interrupter.join();
  CHECK(interrupted.code == 128 + SIGINT);
  CHECK(contains(interrupted.err, "interrupted at step"));
  CHECK_FALSE(fs::exists(dir / "run" / "adapter"));
  REQUIRE(fs::exists(dir / "run" / "checkpoints"));
  const int64_t stopped = static_cast<int64_t>(read_json_lines(dir / "run" / "metrics.jsonl").size());
  CHECK(stopped < 400);

  // A run without --resume refuses the folder; with --resume it finishes.
  const Run refused = run_host(with_out("run"));
  expect_error(refused, 1, {"already holds a training run", "--resume"});
  expect_success(run_host(with_out("run", {"--resume", "--steps", std::to_string(stopped + 2)})));
  expect_success(run_host(with_out("straight", {"--steps", std::to_string(stopped + 2)})));
  const auto a = read_json_lines(dir / "run" / "metrics.jsonl"), b = read_json_lines(dir / "straight" / "metrics.jsonl");
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].value("loss", -1.0) == b[i].value("loss", -1.0));
  CHECK(test_support::read_bytes(dir / "run" / "adapter" / "model.safetensors") ==
        test_support::read_bytes(dir / "straight" / "adapter" / "model.safetensors"));
}

TEST_CASE("cli pipeline: bad input is refused with one error line and leaves no output") {
  TempDir dir;
  const auto model = tiny_task_model(dir);
  const auto data = (kTask / "train.jsonl").string();
  auto train_with = [&](const std::string& experts, const std::string& data_path, const fs::path& out) {
    write_bytes(dir / "ec.json", expert_config_text(experts));
    return run_host({"train", "--model", model.string(), "--expert-config", (dir / "ec.json").string(), "--data",
                     data_path, "--out", out.string(), "--steps", "1"});
  };
  const auto out = dir / "out";
  expect_error(train_with(R"({"0": [1], "1": [1], "2": [1], "3": [0]})", data, out), 1, {"layer 3 is not an MoE layer"});
  CHECK_FALSE(fs::exists(out));
  // An expert config made from scores of a model with 64 experts (the reference's released config).
  const auto released = (fs::path(ESFT_TEST_DATA_DIR) / "esft" / "law.expert_config.json").string();
  const Run other_model = run_host({"train", "--model", model.string(), "--expert-config", released, "--data", data,
                                    "--out", out.string()});
  expect_error(other_model, 1, {"layer 1 names expert 12", "experts 0..7"});
  expect_error(train_with(R"({"0": [8], "1": [1], "2": [1]})", data, out), 1, {"names expert 8", "experts 0..7"});
  expect_error(train_with(R"({"0": [1], "1": [1]})", data, out), 1, {"MoE layer 2 has no entry"});
  expect_error(train_with(R"({"0": [1], "1": [1], "2": [1]})", (dir / "missing.jsonl").string(), out), 1,
               {"missing.jsonl", "does not exist"});
  CHECK_FALSE(fs::exists(out));
  write_bytes(dir / "a-file", "x");
  expect_error(train_with(R"({"0": [1], "1": [1], "2": [1]})", data, dir / "a-file" / "run"), 1, {"does not exist"});
  expect_error(train_with(R"({"0": [1], "1": [1], "2": [1]})", data, dir / "a-file"), 1, {"is not a directory"});
  write_bytes(dir / "bad.toml", "learning_rate = 1e-3\nbogus = 1\n");
  expect_error(run_host({"train", "--model", model.string(), "--expert-config", (dir / "ec.json").string(), "--data",
                         data, "--out", out.string(), "--config", (dir / "bad.toml").string()}),
               1, {"bogus: unknown setting"});
  CHECK_FALSE(fs::exists(out));

  expect_error(run_host({"select", "--scores", (fs::path(ESFT_TEST_DATA_DIR) / "esft" / "law").string(), "--top-p", "0",
                         "--out", (dir / "c.json").string(), "--top-k", "6", "--num-experts", "64"}),
               2, {"--top-p must be in (0, 1]"});
  expect_error(run_host({"select", "--scores", (fs::path(ESFT_TEST_DATA_DIR) / "esft" / "law").string(), "--top-p",
                         "1.5", "--out", (dir / "c.json").string(), "--top-k", "6", "--num-experts", "64"}),
               2, {"--top-p must be in (0, 1]"});
  CHECK_FALSE(fs::exists(dir / "c.json"));
  expect_error(run_host({"params", "--model", model.string(), "--expert-config", released}), 1,
               {"layer 1 names expert 12", "experts 0..7"});
  expect_error(run_host({"params", "--model", model.string(), "--expert-config", (dir / "ec.json").string(),
                         "--ep-size", "2"}),
               2, {"--ep-size needs --megatron"});
  expect_error(run_host({"eval", "--model", model.string(), "--data", (dir / "missing.jsonl").string()}), 1,
               {"does not exist"});
  expect_error(run_host({"eval", "--model", model.string(), "--data", data, "--metric", "bleu"}), 1,
               {"unknown metric 'bleu'"});
}
