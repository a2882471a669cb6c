// `esft-host run`: pipeline files from examples/ run end to end (shortened with --set), steps whose inputs did not
// change are skipped, one failing run does not stop the others, and a bad file is refused before any step starts.
#include "doctest_torch.h"
#include <nlohmann/json.hpp>

#include <csignal>
#include <fstream>
#include <thread>

#include "cli_support.h"
#include "test_support.h"

using namespace cli_support;
using test_support::read_bytes;
using test_support::TempDir;
using test_support::write_bytes;
using nlohmann::json;

namespace {

const fs::path kExamples = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path() / "examples";

// A short version of an example pipeline: few steps, few eval records.
Run run_example(const std::string& name, const fs::path& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"run", (kExamples / name).string(), "--output-dir", out.string(),
                                   "--set", "train.steps=4", "--set", "eval.limit=3", "--set", "eval.max_new_tokens=4"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_host(args);
}

json summary(const fs::path& out) { return json::parse(read_bytes(out / "summary.json")); }

// A pipeline file in `dir` from the demo's, with `edit` applied to its text.
fs::path pipeline_with(const TempDir& dir, const std::string& text) {
  const auto path = dir / "p.toml";
  write_bytes(path, text);
  return path;
}

std::string demo_head(const fs::path& train_data) {
  return "[model]\npath = \"" + (kExamples / "tiny-model").string() + "\"\ndevice = \"cpu\"\n\n[[task]]\nname = \"t\"\n"
         "train_data = \"" + train_data.string() + "\"\n";
}

}  // namespace

TEST_CASE("cli run: the demo pipeline runs every step, records the run, then skips what is up to date") {
  TempDir dir;
  const auto out = dir / "out";
  const Run first = run_example("pipeline.toml", out);
  expect_success(first);
  auto s = summary(out);
  REQUIRE(s.size() == 1);
  CHECK(s[0]["failed"] == false);
  for (const char* step : {"scores", "select", "train", "merge", "eval"}) CHECK(s[0]["steps"][step] == "done");
  CHECK(s[0]["experts"].get<int>() > 0);
  CHECK(s[0]["metric_before"].is_number());
  CHECK(s[0]["metric_after"].is_number());
  CHECK(s[0]["output_bytes"].get<int64_t>() > 0);
  CHECK(fs::exists(out / "summary.csv"));
  // report.html: the summary table and the run's pictures, embedded.
  const auto html = read_bytes(out / "report.html");
  CHECK(contains(html, "<th>task</th>"));
  for (const char* picture : {"intent/scores/routing.png", "intent/default/expert_config.selection.png",
                              "intent/default/train/loss.png"}) {
    CHECK_MESSAGE(contains(html, std::string("<code>") + picture + "</code>"), picture);
  }
  const auto record = json::parse(read_bytes(out / "run_record.json"));
  CHECK(record["pipeline_sha256"].get<std::string>().size() == 64);
  CHECK(record["resolved"]["train"]["steps"] == 4);
  CHECK(record["inputs"]["model"]["config.json"].get<std::string>().size() == 64);
  CHECK(fs::exists(out / "intent" / "default" / "merged" / "model.safetensors.index.json"));

  const Run again = run_example("pipeline.toml", out);
  expect_success(again);
  s = summary(out);
  for (const char* step : {"scores", "select", "train", "merge", "eval"}) CHECK(s[0]["steps"][step] == "up to date");
  CHECK(contains(again.out, "up to date"));

  // A changed training setting reruns training and what depends on it, nothing before it.
  expect_success(run_example("pipeline.toml", out, {"--set", "train.learning_rate=0.02"}));
  s = summary(out);
  CHECK(s[0]["steps"]["select"] == "up to date");
  CHECK(s[0]["steps"]["train"] == "done");
  CHECK(s[0]["steps"]["eval"] == "done");

  // --dry-run prints the plan and writes nothing.
  TempDir dry;
  const Run plan = run_example("pipeline.toml", dry / "out", {"--dry-run"});
  expect_success(plan);
  CHECK(contains(plan.out, "train: run ->"));
  CHECK_FALSE(fs::exists(dry / "out"));
}

TEST_CASE("cli run: the token-vs-gate x top-p sweep makes six runs from one routing pass") {
  TempDir dir;
  const auto out = dir / "out";
  const Run r = run_example("sweep.toml", out, {"--set", "select.top_p=[0.2,0.6]", "--only", "scores,select,train"});
  expect_success(r);
  const auto s = summary(out);
  REQUIRE(s.size() == 4);
  std::set<std::string> names;
  for (const auto& run : s) {
    names.insert(run["run"].get<std::string>());
    CHECK(run["steps"]["train"] == "done");
    CHECK(run["steps"]["eval"] == "not selected");
  }
  CHECK(names == std::set<std::string>{"score_function=token,top_p=0.2", "score_function=gate,top_p=0.2",
                                       "score_function=token,top_p=0.6", "score_function=gate,top_p=0.6"});
  // More experts at the larger top-p.
  std::map<std::string, int> experts;
  for (const auto& run : s) experts[run["run"].get<std::string>()] = run["experts"].get<int>();
  CHECK(experts["score_function=token,top_p=0.6"] > experts["score_function=token,top_p=0.2"]);
  CHECK(fs::exists(out / "intent" / "scores" / "scores.json"));
}

TEST_CASE("cli run: a failing run is reported and the others go on: the exit code says so") {
  TempDir dir;
  write_bytes(dir / "bad.jsonl", "{\"messages\": 3}\n");
  const auto good = kExamples / "tiny-task" / "train.jsonl";
  const auto file = pipeline_with(dir, demo_head(dir / "bad.jsonl") + "\n[[task]]\nname = \"good\"\ntrain_data = \"" +
                                           good.string() + "\"\n\n[train]\nsteps = 2\nbatch_size = 2\n"
                                           "gradient_accumulation_steps = 1\nseq_length = 128\n[merge]\nenabled = false\n");
  const Run r = run_host({"run", file.string(), "--output-dir", (dir / "out").string()});
  CHECK(r.code == 1);
  CHECK(contains(r.err, "t / (task):"));
  const auto s = summary(dir / "out");
  REQUIRE(s.size() == 2);
  CHECK(s[0]["failed"] == true);
  CHECK(s[1]["failed"] == false);
  CHECK(s[1]["steps"]["train"] == "done");
}

TEST_CASE("cli run: a bad pipeline file is refused before any step, naming where") {
  TempDir dir;
  const auto data = kExamples / "tiny-task" / "train.jsonl";
  const auto out = dir / "out";
  auto refuse = [&](const std::string& text, std::initializer_list<std::string> needles, int code = 1) {
    const auto file = pipeline_with(dir, text);
    expect_error(run_host({"run", file.string(), "--output-dir", out.string()}), code, needles);
    CHECK_FALSE(fs::exists(out));
  };
  refuse(demo_head(data) + "[select]\ntop_p = = 0.2\n", {"p.toml:9:9:", "parsing value"});
  refuse(demo_head(data) + "[select]\ntop_pp = 0.2\n", {"p.toml:9:", "unknown key 'top_pp'", "did you mean 'top_p'"});
  refuse(demo_head(data) + "[selekt]\ntop_p = 0.2\n", {"unknown section 'selekt'", "did you mean 'select'"});
  refuse(demo_head(data) + "[select]\ntop_p = \"high\"\n", {"select.top_p must be a number"});
  refuse(demo_head(data) + "[select]\ntop_p = [0.2, 1.5]\n", {"select.top_p", "outside (0, 1]"});
  refuse(demo_head(data) + "[train]\nlearnig_rate = 1e-3\n", {"unknown setting 'learnig_rate'", "did you mean 'learning_rate'"});
  refuse(demo_head(data) + "[train]\nsteps = \"ten\"\n", {"steps must be an integer"});
  refuse(demo_head(data) + "[eval]\nlimit = [1, 2]\n", {"eval.limit must be an integer, not a list"});
  refuse(demo_head(dir / "missing.jsonl"), {"train_data", "missing.jsonl", "does not exist"});
  refuse("[model]\npath = \"" + (dir / "nowhere").string() + "\"\n[[task]]\nname = \"t\"\ntrain_data = \"" + data.string() + "\"\n",
         {"model.path", "has no config.json"});
  refuse(demo_head(data) + "metric = \"blue\"\n", {"unknown metric 'blue'"});
  refuse(demo_head(data) + "[eval]\nlimit = 0\n", {"eval.limit must be positive"});
  const auto file = pipeline_with(dir, demo_head(data));
  expect_error(run_host({"run", file.string(), "--set", "select.top_p"}), 2, {"expected section.key=value"});
  expect_error(run_host({"run", file.string(), "--only", "training"}), 2, {"unknown step 'training'"});
  expect_error(run_host({"run", (dir / "none.toml").string()}), 1, {"none.toml does not exist"});
}

TEST_CASE("cli run: an interrupted pipeline stops, and running it again resumes training from its checkpoint") {
  TempDir dir;
  const auto out = dir / "out";
  const auto metrics = out / "intent" / "default" / "train" / "metrics.jsonl";
  auto lines = [&] {
    std::ifstream in(metrics);
    int n = 0;
    for (std::string line; std::getline(in, line);) n += line.find("\"loss\"") != std::string::npos;
    return n;
  };
  const std::vector<std::string> args = {"run", (kExamples / "pipeline.toml").string(), "--output-dir", out.string(),
                                         "--set", "train.steps=80", "--set", "train.save_steps=5", "--only",
                                         "scores,select,train"};
  std::thread interrupter([&] {
    for (int i = 0; i < 1200 && lines() < 12; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    signal_host(SIGINT, out.string());
  });
  const Run first = run_host(args);
  interrupter.join();
  CHECK(first.code == 128 + SIGINT);
  CHECK(contains(first.err, "interrupted"));
  const int done_before = lines();
  CHECK(done_before >= 10);
  CHECK(done_before < 80);
  const Run second = run_host(args);
  expect_success(second);
  CHECK(contains(second.out, "--resume"));
  CHECK(lines() == 80);  // each step once: the second run continued, it did not start over
}

TEST_CASE("cli run: an experiment file trains each sweep point from scratch, then tables and pictures: done runs stay") {
  TempDir dir;
  const auto out = dir / "x";
  const std::vector<std::string> shrink = {
      "--set", "model.hidden_size=32", "--set", "model.num_hidden_layers=2", "--set", "model.num_attention_heads=2",
      "--set", "train.steps=6", "--set", "train.eval_steps=3", "--set", "train.max_eval_rows=4", "--set",
      "train.seq_length=32", "--set", "train.batch_size=4", "--set", "train.boids_k_nn=4", "--set",
      "sweep.\"train.router_mode\"=[\"none\",\"boids\"]"};
  std::vector<std::string> args = {"run", (kExamples / "tinymoe" / "fast-comparison.toml").string(), "--output-dir",
                                   out.string()};
  args.insert(args.end(), shrink.begin(), shrink.end());
  const Run first = run_host(args);
  expect_success(first);
  CHECK(contains(first.out, "router_mode=none"));
  CHECK(contains(first.out, "boids_cohesion"));
  const auto table = json::parse(read_bytes(out / "summary.json"));
  REQUIRE(table["runs"].size() == 2);
  CHECK(table["runs"][0]["boids_cohesion"].is_null());   // reported only where Boids runs
  CHECK(table["runs"][1]["boids_cohesion"].is_number());
  CHECK(table["runs"][1]["val_ppl"].get<double>() > 1);
  // Plan-B's figures of each trained model (esft-host behaviour), jitter on: some disagreement is possible.
  for (const auto& row : table["runs"]) {
    CHECK(row["self_consistency"].get<double>() > 0.5);
    CHECK(row["self_consistency"].get<double>() <= 1);
    CHECK(row["embedding_variance"].get<double>() > 0);
    CHECK(row["behaviour"]["continuations"].get<int64_t>() > 0);
  }
  const auto csv = read_bytes(out / "summary.csv");
  CHECK(csv.rfind("run,train.router_mode,val_ppl,", 0) == 0);
  CHECK(contains(read_bytes(out / "report.html"), "<code>loss_curves.png</code>"));
  for (const auto* picture :
       {"loss_curves.png", "loss_curves.svg", "utilisation/router_mode=boids.png", "utilisation_entropy.svg"}) {
    CAPTURE(picture);
    CHECK(read_bytes(out / picture).rfind(std::string(picture).find(".png") != std::string::npos ? "\x89PNG" : "<?xml", 0) == 0);
  }
  // Again: both runs are done, nothing trains.
  const Run again = run_host(args);
  expect_success(again);
  CHECK(contains(again.out, "2 done"));
  CHECK_FALSE(contains(again.out, "train --method pretrain"));

  // behaviour on its own: bad settings are one line each, and nothing is written.
  const auto model = (out / "runs" / "router_mode=none" / "train" / "model").string();
  const auto data = (kExamples.parent_path() / "data" / "tinystories" / "valid.jsonl.gz").string();
  expect_error(run_host({"behaviour", "--model", model, "--data", data, "--passes", "1", "--result",
                         (dir / "b.json").string()}),
               2, {"--passes must be at least 2"});
  expect_error(run_host({"behaviour", "--model", model, "--data", (dir / "missing.jsonl").string()}), 1,
               {"does not exist"});
  CHECK_FALSE(fs::exists(dir / "b.json"));
}

TEST_CASE("cli run: a bad experiment file is refused before any run, naming the key") {
  TempDir dir;
  auto refused = [&](const std::vector<std::string>& sets, const std::string& needle) {
    std::vector<std::string> args = {"run", (kExamples / "tinymoe" / "fast-comparison.toml").string(),
                                     "--output-dir", (dir / "out").string()};
    for (const auto& s : sets) args.insert(args.end(), {"--set", s});
    expect_error(run_host(args), 1, {needle});
    CHECK_FALSE(fs::exists(dir / "out"));
  };
  refused({"sweep.\"train.router_mode\"=[]"}, "is an empty list");
  refused({"model.moe_layers=\"every\""}, "moe_layers");
  refused({"model.capacity_factor=0"}, "capacity_factor must be > 0");
  refused({"train.boids_layers=\"some\""}, "boids_layers");
  refused({"sweep.\"model.num_experts_per_tok\"=[5]"}, "num_experts_per_tok 5 is outside [1, 4]");
  refused({"sweep.\"optim.lr\"=[1]"}, "must name model.KEY or train.KEY");
  refused({"experiment.heatmap=[\"model.num_experts\",\"model.router_jitter\"]"}, "is not swept");
}

TEST_CASE("cli run: [compare] trains full, LoRA, ESFT-Token and ESFT-Gate from one scores pass into one table") {
  TempDir dir;
  const auto out = dir / "out";
  // A few records of other text for the general-ability loss, to keep the test short.
  std::string stories;
  {
    std::ifstream in(kExamples / "train.jsonl");
    for (std::string line; std::getline(in, line) && stories.size() < 2000;) stories += line + "\n";
  }
  write_bytes(dir / "general.jsonl", stories);
  const Run r = run_example("compare.toml", out, {"--set", "compare.general_data=\"" + (dir / "general.jsonl").string() + "\""});
  expect_success(r);
  CHECK(contains(r.out, "comparison (the ESFT paper's table"));
  const auto rows = json::parse(read_bytes(out / "compare.json"));
  REQUIRE(rows.size() == 5);  // the base model, then each method
  std::vector<std::string> methods;
  for (const auto& row : rows) methods.push_back(row["method"].get<std::string>());
  CHECK(methods == std::vector<std::string>{"base", "full", "lora", "esft-token", "esft-gate"});
  std::map<std::string, json> by;
  for (const auto& row : rows) by[row["method"].get<std::string>()] = row;
  for (const auto* m : {"full", "lora", "esft-token", "esft-gate"}) {
    CAPTURE(m);
    CHECK(by[m]["task_value"].is_number());
    CHECK(by[m]["general_value"].is_number());
    CHECK(by[m]["trainable_parameters"].get<int64_t>() > 0);
    CHECK(by[m]["output_bytes"].get<int64_t>() > 0);
  }
  // Full fine-tuning trains everything and ships a whole model; the others a fraction.
  CHECK(by["full"]["trainable_parameters"] == by["full"]["parameters"]);
  for (const auto* m : {"lora", "esft-token", "esft-gate"})
    CHECK(by[m]["output_bytes"].get<int64_t>() < by["full"]["output_bytes"].get<int64_t>() / 2);
  CHECK(fs::exists(out / "intent" / "full" / "train" / "model" / "config.json"));
  CHECK(fs::exists(out / "intent" / "lora" / "train" / "adapter" / "adapter_config.json"));
  CHECK_FALSE(fs::exists(out / "intent" / "lora" / "expert_config.json"));  // LoRA selects no experts
  CHECK(fs::exists(out / "intent" / "esft-gate" / "expert_config.json"));
  CHECK(read_bytes(out / "compare.csv").rfind("task,method,metric,task value,general loss,trainable params,", 0) == 0);
  CHECK(read_bytes(out / "compare-intent.png").rfind("\x89PNG", 0) == 0);
  CHECK(read_bytes(out / "compare-intent.svg").rfind("<?xml", 0) == 0);

  // Again: everything is up to date.
  const Run again = run_example("compare.toml", out, {"--set", "compare.general_data=\"" + (dir / "general.jsonl").string() + "\""});
  expect_success(again);
  CHECK_FALSE(contains(again.out, "== intent / lora: train"));
}

TEST_CASE("cli run: a bad [compare] section is refused before any step") {
  TempDir dir;
  const auto data = kExamples / "tiny-task" / "train.jsonl";
  const auto out = dir / "out";
  auto refuse = [&](const std::string& text, std::initializer_list<std::string> needles) {
    const auto file = pipeline_with(dir, demo_head(data) + text);
    expect_error(run_host({"run", file.string(), "--output-dir", out.string()}), 1, needles);
    CHECK_FALSE(fs::exists(out));
  };
  refuse("[compare]\nmethods = [\"full\", \"loar\"]\n", {"unknown method 'loar'", "did you mean 'lora'"});
  refuse("[compare]\nmethods = [\"lora\", \"lora\"]\n", {"lists lora twice"});
  refuse("[compare]\ngeneral_data = \"x.jsonl\"\n", {"[compare] needs 'methods'"});
  refuse("[select]\nscore_function = \"gate\"\n[compare]\nmethods = [\"esft-token\"]\n", {"select.score_function is set by [compare]"});
  refuse("[compare]\nmethods = [\"lora\"]\n[compare.lorra]\nlora_rank = 4\n", {"unknown method 'lorra'"});
  refuse("[compare]\nmethods = [\"lora\"]\n[compare.lora]\nlora_rank = [4, 8]\n", {"a method's settings do not sweep"});
  refuse("[compare]\nmethods = [\"lora\"]\n[compare.lora]\nlora_rnk = 4\n", {"unknown setting 'lora_rnk'", "did you mean 'lora_rank'"});
  refuse("[compare]\nmethods = [\"lora\"]\n[compare.lora]\nlora_rank = 0\n", {"lora_rank must be >= 1"});
  refuse("[compare]\nmethods = [\"full\"]\ngeneral_data = \"missing.jsonl\"\n", {"compare.general_data", "does not exist"});

  // A [select] sweep multiplies the ESFT runs only: full fine-tuning and LoRA select no experts.
  const Run plan = run_example("compare.toml", out, {"--dry-run", "--set", "select.top_p=[0.2,0.5]"});
  expect_success(plan);
  for (const auto* run : {" full:", " lora:", " esft-token,top_p=0.2:", " esft-gate,top_p=0.5:"}) CHECK(contains(plan.out, run));
  CHECK_FALSE(contains(plan.out, "full,top_p"));
  CHECK_FALSE(fs::exists(out));
}
