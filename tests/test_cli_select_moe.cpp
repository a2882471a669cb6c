// Select-MoE from the command line: convert an OLMoE model, inspect and run the result, pre-train its routers.
#include <ATen/ATen.h>

#include "cli_support.h"
#include "esft/io/safetensors.h"

using namespace cli_support;
using nlohmann::json;
using test_support::write_bytes;

namespace {

const fs::path kOlmoe = fs::path(ESFT_TEST_DATA_DIR) / "hf" / "olmoe";
const fs::path kExamples = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path() / "examples";

// The OLMoE fixture with the examples' tiny tokenizer beside it, so that data commands can run on it.
fs::path olmoe_with_tokenizer(const TempDir& dir) {
  const auto model = dir / "olmoe";
  fs::create_directories(model);
  for (const auto& e : fs::directory_iterator(kOlmoe / "model")) fs::copy_file(e.path(), model / e.path().filename());
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(kExamples / "tiny-tokenizer" / f, model / f);
  return model;
}

}  // namespace

TEST_CASE("cli select moe: convert, info, forward with the constraint, and what convert refuses") {
  TempDir dir;
  const auto base = olmoe_with_tokenizer(dir);
  const auto converted = dir / "select";
  const Run c = run_host({"convert", "--model", base.string(), "--out", converted.string(), "--seed", "1"});
  expect_success(c);
  CHECK(contains(c.out, "2 routers of 8 experts grew 2 trash rows each"));
  CHECK(fs::exists(converted / "tokenizer.json"));
  const auto config = json::parse(read_bytes(converted / "config.json"));
  CHECK(config["model_type"] == "select_moe");
  CHECK(config["num_trash_experts"] == 2);

  const Run info = run_host({"info", "--model", converted.string()});
  expect_success(info);
  CHECK(contains(info.out, "8 routed per MoE layer + 2 trash cans (Select-MoE), top-2"));

  const auto out = dir / "forward.safetensors";
  expect_success(run_host({"forward", "--model", converted.string(), "--inputs",
                           (kOlmoe / "reference.safetensors").string(), "--out", out.string()}));
  const esft::SafetensorsFile f(out);
  CHECK(f.find("constraint_loss") != nullptr);
  CHECK(f.find("router_logits.0")->shape.back() == 10);
  CHECK(f.load("constraint_loss").item<float>() > 0);

  expect_error(run_host({"convert", "--model", converted.string(), "--out", (dir / "again").string()}), 1,
               {"already a Select-MoE model"});
  expect_error(run_host({"convert", "--model", (fs::path(ESFT_TEST_DATA_DIR) / "hf" / "qwen3_moe" / "model").string(),
                         "--out", (dir / "qwen").string()}),
               1, {"converts OLMoE models", "qwen3_moe"});
  expect_error(run_host({"convert", "--model", base.string(), "--out", (dir / "t").string(), "--trash-experts", "-1"}),
               2, {"--trash-experts"});
  expect_error(run_host({"convert", "--model", base.string(), "--out", converted.string()}), 1, {"is not empty"});
  for (const char* left : {"again", "qwen", "t"}) CHECK_FALSE(fs::exists(dir / left));
}

TEST_CASE("cli select moe: train --method router trains the routers alone and resumes exactly") {
  TempDir dir;
  const auto base = olmoe_with_tokenizer(dir);
  const auto converted = dir / "select";
  expect_success(run_host({"convert", "--model", base.string(), "--out", converted.string()}));
  const auto data = (kExamples / "tiny-task" / "train.jsonl").string();
  auto train = [&](const fs::path& out, const std::string& steps, bool resume) {
    std::vector<std::string> args = {"train", "--method", "router", "--model", converted.string(), "--data", data,
                                     "--out", out.string(), "--steps", steps};
    if (resume) args.push_back("--resume");
    return run_host(args);
  };
  const Run straight = train(dir / "a", "4", false);
  expect_success(straight);
  CHECK(contains(straight.out, "the routers of 2 MoE layers (8 experts + 2 trash cans each)"));
  CHECK(contains(straight.out, "mean trash constraint"));
  const esft::SafetensorsFile adapter(dir / "a" / "adapter" / "model.safetensors");
  REQUIRE(adapter.tensors().size() == 2);
  for (const auto& t : adapter.tensors()) {
    CHECK(t.name.find("mlp.gate.weight") != std::string::npos);
    CHECK(t.shape[0] == 10);
  }
  // 2 steps, then 2 more after a resume: the same routers to the bit.
  const auto toml = dir / "halves.toml";
  write_bytes(toml, "save_steps = 2\n");
  expect_success(run_host({"train", "--method", "router", "--model", converted.string(), "--data", data, "--out",
                           (dir / "b").string(), "--steps", "2", "--config", toml.string()}));
  expect_success(run_host({"train", "--method", "router", "--model", converted.string(), "--data", data, "--out",
                           (dir / "b").string(), "--steps", "4", "--config", toml.string(), "--resume"}));
  const esft::SafetensorsFile resumed(dir / "b" / "adapter" / "model.safetensors");
  for (const auto& t : adapter.tensors()) CHECK(at::equal(adapter.load(t.name), resumed.load(t.name)));

  expect_error(run_host({"train", "--method", "router", "--model", base.string(), "--data", data, "--out",
                         (dir / "c").string(), "--steps", "1"}),
               1, {"has no trash experts", "esft-host convert"});
  const auto unlabelled = dir / "prompts.jsonl";
  write_bytes(unlabelled, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n");
  expect_error(run_host({"train", "--method", "router", "--model", converted.string(), "--data", unlabelled.string(),
                         "--out", (dir / "d").string(), "--steps", "1"}),
               1, {"no training sample has a labelled token"});
  CHECK_FALSE(fs::exists(dir / "c"));
  CHECK_FALSE(fs::exists(dir / "d"));
}

TEST_CASE("cli select moe: select-data scores every record, keeps the best fraction, draws the histogram") {
  TempDir dir;
  const auto base = olmoe_with_tokenizer(dir);
  const auto converted = dir / "select";
  expect_success(run_host({"convert", "--model", base.string(), "--out", converted.string()}));
  const auto data = (kExamples / "tiny-task" / "train.jsonl").string() + "," +
                    (kExamples / "tiny-task" / "eval.jsonl").string();
  const auto out = dir / "selected";
  const Run r = run_host({"select-data", "--model", converted.string(), "--data", data, "--fraction", "0.1", "--out",
                          out.string()});
  expect_success(r);
  CHECK(contains(r.out, "selected 16 of 160 records"));
  std::istringstream scores(read_bytes(out / "scores.jsonl")), selected(read_bytes(out / "selected_data.jsonl"));
  std::vector<json> all, best;
  for (std::string line; std::getline(scores, line);) all.push_back(json::parse(line));
  for (std::string line; std::getline(selected, line);) best.push_back(json::parse(line));
  REQUIRE(all.size() == 160);
  REQUIRE(best.size() == 16);
  CHECK(all.front()["dataset"] == "train");
  CHECK(all.back()["dataset"] == "eval");
  for (size_t i = 1; i < best.size(); ++i) CHECK(best[i - 1]["score"].get<double>() >= best[i]["score"].get<double>());
  CHECK(best.front().contains("messages"));
  int beaten = 0;  // no record left out scores above the last one kept
  for (const auto& a : all) beaten += a["score"].get<double>() > best.back()["score"].get<double>();
  CHECK(beaten <= 15);
  CHECK(read_bytes(out / "score_histogram.png").rfind("\x89PNG", 0) == 0);

  expect_error(run_host({"select-data", "--model", converted.string(), "--data", data, "--fraction", "0", "--out",
                         (dir / "x").string()}),
               2, {"--fraction must be in (0, 1]"});
  expect_error(run_host({"select-data", "--model", base.string(), "--data", data, "--out", (dir / "y").string()}), 1,
               {"no trash experts"});
  CHECK_FALSE(fs::exists(dir / "x"));
  CHECK_FALSE(fs::exists(dir / "y"));
}

TEST_CASE("cli select moe: eval --metric mc reports acc and acc_norm, zero- and few-shot, and refuses bad records") {
  TempDir dir;
  const auto model = olmoe_with_tokenizer(dir).string();
  const auto data_dir = kExamples.parent_path() / "data";
  const auto arc = (data_dir / "arc_easy" / "test.jsonl.gz").string();
  const auto result = dir / "mc.json";
  const Run zero = run_host({"eval", "--model", model, "--data", arc, "--metric", "mc", "--limit", "8", "--result",
                             result.string()});
  expect_success(zero);
  CHECK(contains(zero.out, "(8 records, 0-shot)"));
  const auto r = json::parse(read_bytes(result));
  CHECK(r["metric"] == "mc");
  CHECK(r["records"] == 8);
  for (const char* key : {"acc", "acc_norm"}) {
    CHECK(r[key].get<double>() >= 0);
    CHECK(r[key].get<double>() <= 1);
  }
  const Run two = run_host({"eval", "--model", model, "--data", arc, "--metric", "mc", "--limit", "4", "--fewshot",
                            "2", "--fewshot-data", (data_dir / "mmlu" / "dev.jsonl.gz").string()});
  expect_success(two);
  CHECK(contains(two.out, "(4 records, 2-shot)"));

  const auto bad = dir / "bad.jsonl";
  write_bytes(bad, "{\"context\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 5}\n");
  expect_error(run_host({"eval", "--model", model, "--data", bad.string(), "--metric", "mc"}), 1,
               {"bad.jsonl:1", "answer 5 is out of range for 2 choices"});
  expect_error(run_host({"eval", "--model", model, "--data", arc, "--metric", "mc", "--fewshot", "2"}), 2,
               {"--fewshot needs --fewshot-data"});
  expect_error(run_host({"eval", "--model", model, "--data", arc, "--metric", "loss", "--fewshot", "1",
                         "--fewshot-data", arc}),
               2, {"apply to --metric mc"});
}

TEST_CASE("cli select moe: a Select-MoE file runs the four stages, then skips what is up to date") {
  TempDir dir;
  const auto model = olmoe_with_tokenizer(dir);
  const auto mc = dir / "mc.jsonl";
  write_bytes(mc, "{\"context\": \"The sky is\", \"choices\": [\"blue\", \"green\"], \"answer\": 0}\n"
                  "{\"context\": \"Two and two make\", \"choices\": [\"four\", \"five\", \"six\"], \"answer\": 0}\n");
  const auto task = (kExamples / "tiny-task" / "train.jsonl").string();
  auto write_file = [&](const std::string& fraction) {
    write_bytes(dir / "sm.toml", "[select_moe]\nmodel = \"" + model.string() + "\"\ndevice = \"cpu\"\n"
                                 "[router]\ndata = \"" + task + "\"\n[router.train]\nsteps = 2\nseq_length = 256\n"
                                 "save_steps = 0\n[selection]\ndata = [\"" + task + "\"]\nfraction = " + fraction +
                                 "\n[finetune]\ntop_p = 0.5\n[finetune.train]\nsteps = 2\nbatch_size = 2\n"
                                 "gradient_accumulation_steps = 1\nseq_length = 256\nsave_steps = 0\neval_fraction = 0\n"
                                 "[evaluate]\ndata = \"" + mc.string() + "\"\n");
  };
  write_file("0.1");
  const auto out = dir / "out";
  const std::vector<std::string> args = {"run", (dir / "sm.toml").string(), "--output-dir", out.string()};
  const Run first = run_host(args);
  expect_success(first);
  CHECK(contains(first.out, "selection  kept 12 of 120 records"));
  const auto summary = json::parse(read_bytes(out / "summary.json"));
  CHECK(summary["kept"] == 12);
  CHECK(summary["after"]["acc"].is_number());
  for (const char* made : {"select/config.json", "router/adapter/model.safetensors", "selection/selected_data.jsonl",
                           "finetune/train/adapter/model.safetensors", "evaluate/after.json"})
    CHECK_MESSAGE(fs::exists(out / made), made);

  const Run again = run_host(args);
  expect_success(again);
  for (const char* stage : {"select", "router", "selection", "finetune", "evaluate"})
    CHECK_MESSAGE(contains(again.out, std::string("== ") + stage + ": up to date"), stage);

  write_file("0.2");  // the selection changes: it and the stages after it run again, the ones before do not
  const Run changed = run_host(args);
  expect_success(changed);
  CHECK(contains(changed.out, "== router: up to date"));
  CHECK_FALSE(contains(changed.out, "== selection: up to date"));
  CHECK_FALSE(contains(changed.out, "== evaluate: up to date"));
  CHECK(contains(changed.out, "kept 24 of 120 records"));

  write_bytes(dir / "bad.toml", "[select_moe]\nmodel = \"" + model.string() + "\"\nseeds = 1\n");
  expect_error(run_host({"run", (dir / "bad.toml").string(), "--output-dir", (dir / "bad").string()}), 1,
               {"[select_moe]: unknown key seeds"});
  CHECK_FALSE(fs::exists(dir / "bad"));
}
