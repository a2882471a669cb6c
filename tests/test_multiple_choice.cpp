// Multiple-choice scoring (pipeline/multiple_choice.h) against hand computations: a unigram stand-in model whose
// log-probabilities are known gives each choice's log-likelihood by hand, and acc / acc_norm pick the best sum and
// the best per-character sum. The request split and the record checks follow lm-evaluation-harness.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <cmath>
#include <fstream>

#include "esft/error.h"
#include "esft/nn/kv_cache.h"
#include "esft/pipeline/multiple_choice.h"
#include "test_support.h"

namespace {

const std::filesystem::path kTokenizer =
    std::filesystem::path(ESFT_TEST_DATA_DIR).parent_path().parent_path() / "examples" / "tiny-tokenizer";

// Every position predicts the same distribution, whatever the context: log p(token) = logp[token].
class UnigramModel : public esft::MoECausalLM {
 public:
  explicit UnigramModel(at::Tensor logp) : logp_(std::move(logp)), config_(esft::ModelConfig::from_json(
                                                                         {{"model_type", "unigram"}}, "test")) {}
  esft::ForwardOutput forward(const at::Tensor& ids, const at::Tensor&, const esft::ForwardOptions&) override {
    esft::ForwardOutput out;
    out.logits = logp_.view({1, 1, -1}).expand({ids.size(0), ids.size(1), logp_.size(0)}).clone();
    return out;
  }
  std::vector<esft::nn::MoELayer*> moe_layers() override { return {}; }
  at::Tensor output_embedding() const override { return {}; }
  std::unique_ptr<esft::nn::KVCache> make_cache() const override { return std::make_unique<esft::nn::KVCache>(0); }
  esft::CheckpointBindings checkpoint_bindings() override { return {}; }
  const esft::ModelConfig& config() const override { return config_; }

 private:
  at::Tensor logp_;
  esft::ModelConfig config_;
};

}  // namespace

TEST_CASE("multiple choice: the request split moves the context's trailing space to the continuation") {
  const auto tok = esft::tok::Tokenizer::load(kTokenizer);
  const auto p = esft::pipeline::encode_pair(tok, "Answer: ", "yes", 7);
  const auto whole = tok.encode("Answer: yes");
  const auto context = tok.encode("Answer:");
  CHECK(p.context == context);
  CHECK(std::vector<int32_t>(whole.begin() + static_cast<long>(context.size()), whole.end()) == p.continuation);
  CHECK(esft::pipeline::encode_pair(tok, "", " yes", 7).context == std::vector<int32_t>{7});  // the prefix token
  CHECK(esft::pipeline::code_points("héllo") == 5);
  CHECK(esft::pipeline::code_points("日本") == 2);
}

TEST_CASE("multiple choice: acc takes the best log-likelihood, acc_norm the best per character, by hand") {
  const auto tok = esft::tok::Tokenizer::load(kTokenizer);
  const int64_t V = 384;
  at::manual_seed(4);
  const auto logp = at::log_softmax(at::randn({V}), 0);
  UnigramModel model(logp);
  esft::pipeline::McRecord r{"The sky is", {"blue", "a very long answer indeed", "green"}, 0, "hand"};
  const auto result = esft::pipeline::score_mc(model, tok, r, "", at::kCPU, {});
  std::vector<double> expected;
  for (const auto& choice : r.choices) {
    double sum = 0;
    for (int32_t id : esft::pipeline::encode_pair(tok, r.context, " " + choice, 0).continuation)
      sum += logp[id].item<double>();
    expected.push_back(sum);
  }
  REQUIRE(result.loglik.size() == 3);
  size_t best = 0, best_norm = 0;
  for (size_t c = 0; c < 3; ++c) {
    CHECK(result.loglik[c] == doctest::Approx(expected[c]).epsilon(1e-6));
    if (expected[c] > expected[best]) best = c;
    if (expected[c] / static_cast<double>(r.choices[c].size()) >
        expected[best_norm] / static_cast<double>(r.choices[best_norm].size()))
      best_norm = c;
  }
  CHECK(result.best == best);
  CHECK(result.best_norm == best_norm);
  CHECK(best != 1);        // the long answer has the lowest sum ...
  CHECK(best_norm == 1);   // ... but the best per character: acc and acc_norm part ways on this record
  CHECK(result.correct == (best == 0));
  CHECK_FALSE(result.correct_norm);
}

TEST_CASE("multiple choice: records, few-shot prefixes and what is refused") {
  test_support::TempDir dir;
  const auto file = dir / "mc.jsonl";
  auto write = [&](const std::string& text) { std::ofstream(file) << text; };
  write("{\"context\": \"2+2=\", \"choices\": [\"3\", \"4\"], \"answer\": 1}\n\n{\"context\": \"Sky?\", \"choices\": [\"blue\"], \"answer\": 0}\n");
  const auto records = esft::pipeline::read_mc_records(file);
  REQUIRE(records.size() == 2);
  CHECK(records[1].origin == file.string() + ":3");
  CHECK(esft::pipeline::fewshot_prefix(records, 2) == "2+2= 4\n\nSky? blue\n\n");
  CHECK(esft::pipeline::fewshot_prefix(records, 0).empty());
  CHECK_THROWS_WITH_AS(esft::pipeline::fewshot_prefix(records, 3), doctest::Contains("the dev file has 2"), esft::Error);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{\"context\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 2}", "answer 2 is out of range for 2 choices"},
      {"{\"context\": \"q\", \"choices\": [], \"answer\": 0}", "non-empty list"},
      {"{\"context\": \"q\", \"choices\": [\"a\", \"\"], \"answer\": 0}", "non-empty strings"},
      {"{\"choices\": [\"a\"], \"answer\": 0}", "needs \"context\""},
      {"{\"context\": \"q\", \"choices\": [\"a\"], \"answer\": \"a\"}", "needs \"answer\""},
      {"", "holds no records"}};
  for (const auto& item : bad) {
    const auto& text = item.first;
    CAPTURE(text);
    write(text + "\n");
    CHECK_THROWS_WITH_AS(esft::pipeline::read_mc_records(file), doctest::Contains(item.second.c_str()), esft::Error);
  }
}
