// --rescore FILE: completions saved by `eval --out` or by the ESFT reference (results/completions/*.jsonl) scored
// again with --metric, without a model. Where the file holds scores too, the report says on how many records ours
// agree: that is how the metrics are checked against the reference's own.
#include <cmath>
#include <iomanip>
#include <iostream>
#include <optional>

#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/pipeline/completions.h"
#include "eval_modes.h"

namespace esft::host::eval {

int run_rescore(const po::variables_map& vm, const CompletionScorer& scorer) {
  const auto path = vm["rescore"].as<std::string>();
  const auto& metric_text = scorer.name();
  auto records = pipeline::read_completions(path);
  if (vm.count("limit") && vm["limit"].as<int64_t>() < static_cast<int64_t>(records.size())) {
    records.resize(static_cast<size_t>(vm["limit"].as<int64_t>()));
  }
  std::optional<AtomicFile> out;
  if (vm.count("out")) out.emplace(vm["out"].as<std::string>());
  double total = 0, recorded_total = 0, largest_difference = 0;
  int64_t with_recorded = 0, agreeing = 0;
  std::vector<ScoreRequest> requests;
  for (const auto& r : records) requests.push_back({r.completion, r.answers});
  const auto scores = scorer.score_all(requests);
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    const double score = scores[i].score;
    total += score;
    nlohmann::json line = {{"origin", r.origin}, {"score", score}};
    if (scorer.is_judge()) line[scores[i].judge_error.empty() ? "judge_reply" : "judge_error"] =
        scores[i].judge_error.empty() ? scores[i].judge_reply : scores[i].judge_error;
    if (r.recorded_score) {
      ++with_recorded;
      recorded_total += *r.recorded_score;
      const double difference = std::abs(score - *r.recorded_score);
      largest_difference = std::max(largest_difference, difference);
      agreeing += difference <= 1e-9;
      line["recorded_score"] = *r.recorded_score;
    }
    if (out) out->stream() << line.dump() << "\n";
  }
  if (out) out->commit();
  const double n = static_cast<double>(records.size()), value = total / n;
  std::cout << metric_text << " " << std::fixed << std::setprecision(4) << value << "  (" << records.size()
            << " records of " << path << ")\n";
  nlohmann::json result = {{"metric", metric_text}, {"value", value}, {"records", records.size()}, {"rescored", path}};
  if (with_recorded > 0) {
    const double recorded_mean = recorded_total / static_cast<double>(with_recorded);
    std::cout << "the file's scores: mean " << recorded_mean << "; ours are the same on " << agreeing << " of "
              << with_recorded << " records (largest difference " << std::setprecision(6) << largest_difference
              << ")\n";
    result["recorded_value"] = recorded_mean;
    result["agreeing_records"] = agreeing;
    result["records_with_score"] = with_recorded;
  }
  write_result(vm, result);
  return 0;
}

}  // namespace esft::host::eval
