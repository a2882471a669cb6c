// Multi-process runs on this machine with Gloo (issue 18): `scores` over 2 and 3 processes writes the scores.json of
// one process, bit for bit; data-parallel ESFT training gives the adapter of one process within float32 tolerance;
// expert-parallel ESFT over 2 and 4 processes gives the adapter and checkpoints of one process and resumes over
// another number; a rank killed mid-run makes the other fail with a clear error instead of hanging, and the run resumes; commands
// that run as one process refuse a world size above 1.
#include <ATen/ATen.h>
#include "doctest_torch.h"
#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <fstream>
#include <thread>

#include "cli_support.h"
#include "esft/io/safetensors.h"
#include "launch/launcher.h"
#include "test_support.h"

using namespace cli_support;
using nlohmann::json;
using test_support::TempDir;

namespace {

const fs::path kSource = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path();  // the repository
const fs::path kTrainData = kSource / "examples" / "tiny-task" / "train.jsonl";


// `esft-host launch --nproc N -- esft-host ARGS...` (N = 1 runs ARGS without launch: one process, no group).
Run run_ranks(int nproc, std::vector<std::string> args) {
  if (nproc == 1) return run_host(args);
  std::vector<std::string> all = {"launch", "--nproc", std::to_string(nproc), "--", kHost.string()};
  all.insert(all.end(), args.begin(), args.end());
  return run_host(all);
}


struct Schedule {
  int steps = 4, batch_size = 6, accumulation = 2, save_steps = 2, eval_steps = 2;
  double learning_rate = 1e-4;
};

fs::path write_config(const TempDir& dir, const std::string& name, const Schedule& s) {
  const auto path = dir / name;
  std::ofstream(path) << "learning_rate = " << s.learning_rate << "\nsteps = " << s.steps << "\nbatch_size = "
                      << s.batch_size << "\ngradient_accumulation_steps = " << s.accumulation
                      << "\nseq_length = 128\nsave_steps = " << s.save_steps << "\neval_steps = " << s.eval_steps
                      << "\nlog_steps = 1\neval_fraction = 0.2\n";
  return path;
}

fs::path write_expert_config(const TempDir& dir) {
  const auto path = dir / "expert_config.json";
  std::ofstream(path) << R"({"experts": {"0": [0, 3], "1": [1, 2, 5], "2": [4]}, "shared_experts": false, "non_expert_modules": false})";
  return path;
}

// The largest |a - b| over the tensors of `a_path`, which `b_path` must hold too with the same shapes.
double max_difference(const fs::path& a_path, const fs::path& b_path) {
  const esft::SafetensorsFile a(a_path), b(b_path);
  double worst = 0;
  for (const auto& t : a.tensors()) {
    CAPTURE(t.name);
    REQUIRE(b.find(t.name));
    const auto x = a.load(t.name).to(at::kDouble), y = b.load(t.name).to(at::kDouble);
    REQUIRE(x.sizes() == y.sizes());
    worst = std::max(worst, (x - y).abs().max().item<double>());
  }
  return worst;
}

// The largest |a - base| over the tensors of the adapter `a_path`, base tensors from the model's shards.
double max_change(const fs::path& a_path, const fs::path& model) {
  const esft::SafetensorsFile a(a_path);
  const auto index = json::parse(test_support::read_bytes(model / "model.safetensors.index.json"));
  double worst = 0;
  for (const auto& t : a.tensors()) {
    CAPTURE(t.name);
    const esft::SafetensorsFile shard(model / index["weight_map"][t.name].get<std::string>());
    worst = std::max(worst, (a.load(t.name).to(at::kDouble) - shard.load(t.name).to(at::kDouble)).abs().max().item<double>());
  }
  return worst;
}

// Two ranks of `args` started by hand, as separate esft-host processes (no launcher to stop the survivor); rank 1's
// arguments end with `--steps STEPS`, the same run, an argument for signal_host to find that rank alone (so STEPS is a
// number no other argument of any test's esft-host is: ctest runs cases side by side). `while_running` runs in between.
std::pair<Run, Run> run_two_ranks(const std::vector<std::string>& args, int steps,
                                  const std::function<void()>& while_running) {
  const int port = esft::host::free_local_port();
  auto env = [&](int rank) {
    return std::vector<std::pair<std::string, std::string>>{{"RANK", std::to_string(rank)}, {"WORLD_SIZE", "2"},
                                                           {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)}};
  };
  Run rank0, rank1;
  std::thread first([&] { rank0 = run_host(args, env(0)); });
  std::thread second([&] {
    auto a = args;
    a.push_back("--steps");
    a.push_back(std::to_string(steps));
    rank1 = run_host(a, env(1));
  });
  while_running();
  second.join();
  first.join();
  return {rank0, rank1};
}

// Waits up to two minutes for `path` to exist.
bool wait_for(const fs::path& path) {
  const auto start = std::chrono::steady_clock::now();
  while (!fs::exists(path) && std::chrono::steady_clock::now() - start < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return fs::exists(path);
}

}  // namespace

TEST_CASE("cli distributed: scores over 2 and 3 processes writes the scores.json of one process, bit for bit") {
  TempDir dir;
  const auto model = tiny_task_model(dir);
  // A budget that ends inside the data, batches of 3 samples: several rounds, the last one short.
  auto scores = [&](int nproc, const std::string& out) {
    return run_ranks(nproc, {"--device", "cpu", "scores", "--model", model.string(), "--data", kTrainData.string(),
                             "--out", (dir / out).string(), "--batch-size", "3", "--n-sample-tokens", "1500"});
  };
  const Run one = scores(1, "one");
  expect_success(one);
  const auto expected = test_support::read_bytes(dir / "one" / "scores.json");
  CHECK(json::parse(expected)["tokens"].get<int64_t>() >= 1500);
  for (const int nproc : {2, 3}) {
    CAPTURE(nproc);
    const Run many = scores(nproc, "many" + std::to_string(nproc));
    expect_success(many);
    CHECK(contains(many.err, "[rank 0] esft-host: " + std::to_string(nproc) + " processes (torchrun, gloo"));
    CHECK(contains(many.out, "[rank 0] wrote "));
    CHECK(test_support::read_bytes(dir / ("many" + std::to_string(nproc)) / "scores.json") == expected);
  }
}

TEST_CASE("cli distributed: expert-parallel scores over 2 and 4 processes count the tokens of one process") {
  TempDir dir;
  const auto model = tiny_task_model(dir);
  // 22 batches of 5 samples: over 4 processes the last round has 2, and the ranks without one still take part.
  auto scores = [&](int nproc, const std::string& out) {
    std::vector<std::string> args = {"--device", "cpu", "scores", "--model", model.string(), "--data",
                                     kTrainData.string(), "--out", (dir / out).string(), "--batch-size", "5",
                                     "--n-sample-tokens", "5000"};
    if (nproc > 1) args.push_back("--expert-parallel");
    return run_ranks(nproc, args);
  };
  expect_success(scores(1, "one"));
  const auto expected = json::parse(test_support::read_bytes(dir / "one" / "scores.json"));
  for (const int nproc : {2, 4}) {
    CAPTURE(nproc);
    const auto out = "ep" + std::to_string(nproc);
    const Run ep = scores(nproc, out);
    expect_success(ep);
    CHECK(contains(ep.out, "from 110 samples (" + std::to_string(nproc) + " processes)"));
    // The same routing decisions; the gate sums of layers after the first within float32 rounding, since each
    // expert's products run over the rows of every rank at once.
    const auto got = json::parse(test_support::read_bytes(dir / out / "scores.json"));
    CHECK(got["tokens"] == expected["tokens"]);
    REQUIRE(got["layers"].size() == expected["layers"].size());
    for (const auto& item : expected["layers"].items()) {
      const std::string layer = item.key();
      const auto& stats = item.value();
      CAPTURE(layer);
      CHECK(got["layers"][layer]["token_count"] == stats["token_count"]);
      for (size_t e = 0; e < stats["gate_sum"].size(); ++e) {
        const double want = stats["gate_sum"][e].get<double>(), have = got["layers"][layer]["gate_sum"][e].get<double>();
        CHECK(std::abs(have - want) <= 1e-7 * std::max(1.0, std::abs(want)));
      }
    }
  }
}

TEST_CASE("cli distributed: data-parallel ESFT over 2 and 3 processes trains the adapter of one process") {
  TempDir dir;
  const auto model = tiny_task_model(dir);
  const auto experts = write_expert_config(dir);
  // A global micro-batch of 6 rows, accumulated twice: every rank has rows of every micro-batch. A small learning
  // rate: Adam's first steps move each weight by about the learning rate whatever its gradient's size, so the
  // rounding of a near-zero gradient shows at that scale.
  const auto config = write_config(dir, "train.toml", Schedule{});
  auto train = [&](int nproc, const std::string& out) {
    return run_ranks(nproc, {"--device", "cpu", "train", "--model", model.string(), "--expert-config", experts.string(),
                             "--data", kTrainData.string(), "--config", config.string(), "--out", (dir / out).string()});
  };
  const Run one = train(1, "one");
  expect_success(one);
  const auto one_metrics = read_json_lines(dir / "one" / "metrics.jsonl");
  const auto one_adapter = dir / "one" / "adapter" / "model.safetensors";
  const double trained = max_change(one_adapter, model);
  CHECK(trained > 2e-4);  // 4 steps of 1e-4 moved the experts
  for (const int nproc : {2, 3}) {
    CAPTURE(nproc);
    const auto out = "dp" + std::to_string(nproc);
    const Run dp = train(nproc, out);
    expect_success(dp);
    CHECK(contains(dp.out, "[rank 0] processes  " + std::to_string(nproc) + " (gloo)"));
    CHECK_FALSE(contains(dp.out, "[rank 1] model"));  // rank 0 speaks for the run
    CHECK(max_difference(dir / out / "adapter" / "model.safetensors", one_adapter) < 1e-6);
    const auto metrics = read_json_lines(dir / out / "metrics.jsonl");
    REQUIRE(metrics.size() == one_metrics.size());
    // The experts' gradients and a small record (a float64 flag per trainable tensor, the loss, the stop request,
    // expert parallelism's squared norm; the trainer may hold several experts in one tensor), every step.
    const esft::SafetensorsFile adapter(dir / out / "adapter" / "model.safetensors");
    int64_t gradient_bytes = 0;
    for (const auto& t : adapter.tensors()) gradient_bytes += adapter.load(t.name).numel() * 4;
    const int64_t most_small_bytes = (static_cast<int64_t>(adapter.tensors().size()) + 3) * 8;
    for (size_t i = 0; i < metrics.size(); ++i) {
      CAPTURE(i);
      if (metrics[i].contains("loss")) {
        CHECK(metrics[i]["loss"].get<double>() == doctest::Approx(one_metrics[i]["loss"].get<double>()).epsilon(1e-5));
        CHECK(metrics[i]["tokens"] == one_metrics[i]["tokens"]);
        const int64_t small = metrics[i]["comm_bytes"].get<int64_t>() - gradient_bytes;
        CHECK(small >= 4 * 8);
        CHECK(small <= most_small_bytes);
        CHECK(small % 8 == 0);
      } else {
        CHECK(metrics[i]["eval_loss"].get<double>() ==
              doctest::Approx(one_metrics[i]["eval_loss"].get<double>()).epsilon(1e-5));
      }
    }
  }
}

TEST_CASE("cli distributed: expert-parallel ESFT over 2 and 4 processes trains the adapter and checkpoints of one process") {
  TempDir dir;
  const auto model = tiny_task_model(dir);  // 8 experts per layer: 4 per rank over 2 processes, 2 over 4
  const auto experts = write_expert_config(dir);
  const auto config = write_config(dir, "train.toml", Schedule{});
  auto train = [&](int nproc, const std::string& out, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--device", "cpu", "train", "--model", model.string(), "--expert-config",
                                     experts.string(), "--data", kTrainData.string(), "--config", config.string(),
                                     "--out", (dir / out).string()};
    if (nproc > 1) args.push_back("--expert-parallel");
    args.insert(args.end(), extra.begin(), extra.end());
    return run_ranks(nproc, args);
  };
  expect_success(train(1, "one"));
  const auto one_metrics = read_json_lines(dir / "one" / "metrics.jsonl");
  const auto last = fs::path("checkpoints") / "step-000004";
  for (const int nproc : {2, 4}) {
    CAPTURE(nproc);
    const auto out = "ep" + std::to_string(nproc);
    const Run ep = train(nproc, out);
    expect_success(ep);
    CHECK(contains(ep.out, "each holds " + std::to_string(8 / nproc) + " experts of every MoE layer"));
    CHECK(max_difference(dir / out / "adapter" / "model.safetensors", dir / "one" / "adapter" / "model.safetensors") < 1e-6);
    // The checkpoint holds the tensors and optimizer state of one process, gathered from the ranks.
    CHECK(max_difference(dir / out / last / "trainable.safetensors", dir / "one" / last / "trainable.safetensors") < 1e-6);
    CHECK(max_difference(dir / out / last / "optimizer.safetensors", dir / "one" / last / "optimizer.safetensors") < 1e-6);
    const auto metrics = read_json_lines(dir / out / "metrics.jsonl");
    REQUIRE(metrics.size() == one_metrics.size());
    for (size_t i = 0; i < metrics.size(); ++i) {
      CAPTURE(i);
      const char* key = metrics[i].contains("loss") ? "loss" : "eval_loss";
      CHECK(metrics[i][key].get<double>() == doctest::Approx(one_metrics[i][key].get<double>()).epsilon(1e-5));
      if (metrics[i].contains("grad_norm"))
        CHECK(metrics[i]["grad_norm"].get<double>() == doctest::Approx(one_metrics[i]["grad_norm"].get<double>()).epsilon(1e-5));
    }
  }
  // The checkpoints do not depend on the placement: the run of 2 processes goes on over 4, as one process goes on.
  expect_success(train(1, "one", {"--resume", "--steps", "6"}));
  expect_success(train(4, "ep2", {"--resume", "--steps", "6"}));
  CHECK(max_difference(dir / "ep2" / "adapter" / "model.safetensors", dir / "one" / "adapter" / "model.safetensors") < 1e-6);

  // Refused: one process, and methods other than esft.
  const auto alone = train(1, "alone", {"--expert-parallel"});
  expect_error(alone, 2, {"--expert-parallel spreads the experts over the processes of a multi-process run"});
  const Run lora = run_ranks(2, {"--device", "cpu", "train", "--model", model.string(), "--method", "lora", "--data",
                                 kTrainData.string(), "--out", (dir / "lora").string(), "--expert-parallel"});
  CHECK(lora.code != 0);
  CHECK(contains(lora.err, "--expert-parallel is built for --method esft (not lora)"));
  CHECK_FALSE(fs::exists(dir / "lora"));
}

TEST_CASE("cli distributed: a rank killed mid-run makes the other fail with a clear error, and the run resumes") {
  TempDir dir;
  const auto model = tiny_task_model(dir);
  const auto experts = write_expert_config(dir);
  // Long enough that rank 1 is killed well before the end.
  Schedule schedule;
  schedule.steps = 53, schedule.batch_size = 2, schedule.accumulation = 1, schedule.save_steps = 5;
  schedule.eval_steps = 0;
  const auto config = write_config(dir, "train.toml", schedule);
  auto args = [&](const std::string& out, bool resume) {
    std::vector<std::string> a = {"--device", "cpu", "--dist-timeout", "40", "train", "--model", model.string(),
                                  "--expert-config", experts.string(), "--data", kTrainData.string(), "--config",
                                  config.string(), "--out", (dir / out).string()};
    if (resume) a.push_back("--resume");
    return a;
  };
  // The uninterrupted run of 2 processes.
  expect_success(run_ranks(2, args("whole", false)));

  // Rank 1 is killed once a checkpoint exists.
  std::chrono::steady_clock::time_point killed_at;
  const auto ranks = run_two_ranks(args("cut", false), schedule.steps, [&] {
    CHECK(wait_for(dir / "cut" / "checkpoints" / "step-000005" / "trainer_state.json"));
    killed_at = std::chrono::steady_clock::now();
    signal_host(SIGKILL, std::to_string(schedule.steps));
  });
  const Run &rank0 = ranks.first, &rank1 = ranks.second;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  INFO("rank 0 stderr: ", rank0.err);
  CHECK(rank1.code == 128 + SIGKILL);
  CHECK(rank0.code == 1);
  CHECK(contains(rank0.err, "esft-host: error: rank 0 of 2: all-reduce failed; another rank has failed or stopped"));
  CHECK(seconds < 40);  // within --dist-timeout, not a hang

  // The interrupted run goes on from its last checkpoint, to the adapter of the uninterrupted one.
  const Run resumed = run_ranks(2, args("cut", true));
  expect_success(resumed);
  CHECK(contains(resumed.out, "[rank 0] resumed    at step"));
  CHECK(max_difference(dir / "cut" / "adapter" / "model.safetensors", dir / "whole" / "adapter" / "model.safetensors") == 0);
}

TEST_CASE("cli distributed: SIGTERM to one rank stops both after the same step, and 3 processes resume the run") {
  TempDir dir;
  const auto model = tiny_task_model(dir);
  const auto experts = write_expert_config(dir);
  Schedule schedule;
  schedule.steps = 31, schedule.batch_size = 3, schedule.accumulation = 1, schedule.save_steps = 5;
  schedule.eval_steps = 0;
  const auto config = write_config(dir, "train.toml", schedule);
  auto args = [&](const std::string& out) {
    return std::vector<std::string>{"--device", "cpu", "train", "--model", model.string(), "--expert-config",
                                    experts.string(), "--data", kTrainData.string(), "--config", config.string(),
                                    "--out", (dir / out).string()};
  };
  expect_success(run_ranks(1, args("one")));

  const auto ranks = run_two_ranks(args("cut"), schedule.steps, [&] {
    CHECK(wait_for(dir / "cut" / "checkpoints" / "step-000005" / "trainer_state.json"));
    signal_host(SIGTERM, std::to_string(schedule.steps));
  });
  const Run &rank0 = ranks.first, &rank1 = ranks.second;
  INFO("rank 0 stderr: ", rank0.err);
  INFO("rank 1 stderr: ", rank1.err);
  CHECK(rank0.code == 128 + SIGTERM);
  CHECK(rank1.code == 128 + SIGTERM);
  CHECK(contains(rank0.err, "esft-host: interrupted at step "));
  CHECK_FALSE(fs::exists(dir / "cut" / "adapter"));
  // The checkpoint of the step both stopped after, from rank 0, with the world size it was made with.
  const auto last = dir / "cut" / "checkpoints";
  json state;
  for (const auto& e : fs::directory_iterator(last))
    if (fs::exists(e.path() / "trainer_state.json")) {
      const auto s = json::parse(test_support::read_bytes(e.path() / "trainer_state.json"));
      if (state.is_null() || s["step"] > state["step"]) state = s;
    }
  REQUIRE_FALSE(state.is_null());
  CHECK(state["world_size"] == 2);
  CHECK(state["step"].get<int64_t>() < schedule.steps);
  CHECK(contains(rank0.err, "interrupted at step " + std::to_string(state["step"].get<int64_t>()) + ";"));

  // Another number of processes continues it: a step's rows do not depend on how many share them.
  auto resume = args("cut");
  resume.push_back("--resume");
  const Run resumed = run_ranks(3, resume);
  expect_success(resumed);
  CHECK(contains(resumed.out, "[rank 0] resumed    at step " + std::to_string(state["step"].get<int64_t>())));
  CHECK(max_difference(dir / "cut" / "adapter" / "model.safetensors", dir / "one" / "adapter" / "model.safetensors") < 1e-5);
}

TEST_CASE("cli distributed: one-process commands, a malformed environment and too small a batch are refused") {
  const std::vector<std::pair<std::string, std::string>> two = {
      {"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29999"}};
  expect_error(run_host({"plugins"}, two), 2, {"plugins runs as one process, but this is rank 1 of 2 (torchrun)"});
  expect_error(run_host({"scores", "--model", "m", "--data", "d", "--out", "o"},
                        {{"RANK", "0"}, {"WORLD_SIZE", "two"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "1"}}),
               1, {"WORLD_SIZE='two' is not an integer in [1, 1048576]"});
  expect_error(run_host({"scores", "--model", "m", "--data", "d", "--out", "o"},
                        {{"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_STEP_NODELIST", "node[]"}}),
               1, {"the SLURM node list 'node[]' is not one"});

  TempDir dir;
  const auto model = tiny_task_model(dir);
  const auto experts = write_expert_config(dir);
  const Run small = run_ranks(2, {"--device", "cpu", "train", "--model", model.string(), "--expert-config",
                                  experts.string(), "--data", kTrainData.string(), "--config",
                                  write_config(dir, "small.toml", Schedule{2, 1, 2, 2, 0, 1e-4}).string(), "--out",
                                  (dir / "run").string()});
  CHECK(small.code == 1);
  CHECK(contains(small.err, "batch_size 1 is smaller than the 2 processes"));
  CHECK_FALSE(fs::exists(dir / "run" / "checkpoints"));
}
