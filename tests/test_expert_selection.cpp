// Expert selection against the ESFT reference: from the reference's own routing logs of DeepSeek-V2-Lite (intent
// and law; 26 MoE layers, 64 experts, top-6), the token and gate scores of its summary.json to 4 decimals and
// every layer of the expert configs it released (token, top_p 0.2).
#include "doctest_torch.h"

#include <fstream>

#include "esft/error.h"
#include "esft/pipeline/expert_selection.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using namespace esft::pipeline;

const fs::path kEsft = fs::path(ESFT_TEST_DATA_DIR) / "esft";

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

void check_task(const std::string& task) {
  const auto stats = load_routing_stats(kEsft / task, /*top_k=*/6, /*num_experts=*/64);
  CHECK(stats.layers.size() == 26);
  const auto summary = read_json(kEsft / task / "summary.json");
  for (const auto& entry : {std::pair{ScoreFunction::Token, "token_scores"}, std::pair{ScoreFunction::Gate, "gate_scores"}}) {
    const auto function = entry.first;  // not a structured binding: doctest's INFO captures it
    const auto key = entry.second;
    int mismatches = 0, compared = 0;
    for (const auto& [layer, scores] : expert_scores(stats, function)) {
      const auto& expected = summary.at(key).at(std::to_string(layer));
      for (int e = 0; e < 64; ++e, ++compared) mismatches += scores[e] != expected.at(std::to_string(e)).get<double>();
    }
    INFO(task, " ", key);
    CHECK(compared == 26 * 64);
    CHECK(mismatches == 0);
  }
  const auto released = ExpertConfig::load(kEsft / (task + ".expert_config.json"));
  const auto ours = select_experts(stats, ScoreFunction::Token, 0.2);
  CHECK(ours.experts == released.experts);
  CHECK(ours.to_json() == read_json(kEsft / (task + ".expert_config.json")));
}

}  // namespace

TEST_CASE("expert selection: the reference's intent logs give its scores and its released config") { check_task("intent"); }

TEST_CASE("expert selection: the reference's law logs give its scores and its released config") { check_task("law"); }

TEST_CASE("expert selection: rounding, ordering and the threshold") {
  CHECK(round4(0.00005) == 0.0001);  // 0.00005 is just above the tie in binary
  CHECK(round4(0.12345) == 0.1235);
  CHECK(round4(2.5e-5) == 0.0);
  RoutingStats s;
  s.num_experts = 4;
  s.top_k = 1;
  s.tokens = 10;
  s.layers[3] = {{5, 2, 2, 1}, {0, 0, 0, 0}, 10};  // token scores 0.5, 0.2, 0.2, 0.1
  CHECK(select_experts(s, ScoreFunction::Token, 0.5).experts.at(3) == std::vector<int64_t>{0});
  CHECK(select_experts(s, ScoreFunction::Token, 0.6).experts.at(3) == std::vector<int64_t>{0, 1});  // tie: lower id first
  CHECK(select_experts(s, ScoreFunction::Token, 1.0).experts.at(3) == std::vector<int64_t>{0, 1, 2, 3});
  CHECK_THROWS_AS(select_experts(s, ScoreFunction::Token, 0.0), esft::Error);
  CHECK_THROWS_AS(select_experts(s, ScoreFunction::Token, 1.5), esft::Error);
  CHECK_THROWS_AS(parse_score_function("mass"), esft::Error);
  // scores.json round trip.
  s.model_type = "qwen3_moe";
  CHECK(RoutingStats::from_json(s.to_json(), "x").layers.at(3).token_count == s.layers.at(3).token_count);
}

TEST_CASE("expert selection: malformed logs name file and line") {
  test_support::TempDir dir;
  std::ofstream(dir / "expert_weights_1.txt") << "1\t2\t\t0.5\t0.5\n3\t70\t\t0.5\t0.5\n";
  CHECK_THROWS_WITH_AS(read_legacy_logs(dir.path, 2, 64), doctest::Contains("expert_weights_1.txt:2: expert id 70"),
                       esft::Error);
  std::ofstream(dir / "expert_weights_1.txt") << "1\t2\t0.5\t0.5\n";
  CHECK_THROWS_WITH_AS(read_legacy_logs(dir.path, 2, 64), doctest::Contains("expert_weights_1.txt:1: no tab-tab"), esft::Error);
  std::ofstream(dir / "expert_weights_1.txt") << "1\t2\t\t0.5\n";
  CHECK_THROWS_WITH_AS(read_legacy_logs(dir.path, 2, 64), doctest::Contains("differ"), esft::Error);
  CHECK_THROWS_AS(load_routing_stats(dir / "nothing"), esft::Error);
}

TEST_CASE("expert selection: configs and scores with numbers out of range or keys of the wrong shape are refused") {
  using nlohmann::json;
  // Found by the expert_config and scores fuzz targets (fuzz/regressions): an expert id of 1e41 was converted to
  // int64 (undefined behaviour), and a "format" that is an object escaped as a JSON type error.
  CHECK_THROWS_WITH_AS(esft::pipeline::ExpertConfig::from_json({{"experts", {{"1", {3, 1e41}}}}}, "c.json"),
                       doctest::Contains("c.json: layer 1: experts must be a list of integers"), esft::Error);
  CHECK_THROWS_WITH_AS(esft::pipeline::ExpertConfig::from_json({{"experts", {{"99999999999999999999", {3}}}}}, "c.json"),
                       doctest::Contains("is not a layer index"), esft::Error);
  const json scores = {{"format", "esft-scores"}, {"version", 1}, {"num_experts", 2}, {"top_k", 1}, {"tokens", 4},
                       {"layers", {{"0", {{"token_count", {1, 3}}, {"gate_sum", {0.5, 2.0}}}}}}};
  CHECK(esft::pipeline::RoutingStats::from_json(scores, "s.json").layers.at(0).token_count[1] == 3);
  auto with = [&](const char* key, json value) {
    json j = scores;
    j[key] = std::move(value);
    return j;
  };
  CHECK_THROWS_AS(esft::pipeline::RoutingStats::from_json(with("format", json::object()), "s.json"), esft::Error);
  CHECK_THROWS_AS(esft::pipeline::RoutingStats::from_json(with("version", 1.0e300), "s.json"), esft::Error);
  CHECK_THROWS_WITH_AS(esft::pipeline::RoutingStats::from_json(with("num_experts", 2.5), "s.json"),
                       doctest::Contains("\"num_experts\" must be a non-negative integer"), esft::Error);
  json bad_layer = scores;
  bad_layer["layers"] = {{"x1", scores["layers"]["0"]}};
  CHECK_THROWS_WITH_AS(esft::pipeline::RoutingStats::from_json(bad_layer, "s.json"),
                       doctest::Contains("layer key 'x1' is not a layer index"), esft::Error);
}
