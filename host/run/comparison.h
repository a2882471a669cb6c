#pragma once
// The ESFT paper's kind of table for a pipeline with [compare]: one row per method (and the base model) with the
// task metric, the general-ability metric, trainable parameters, training time and output size; printed, written
// as compare.csv and compare.json, and drawn per task as grouped bars (compare-<task>.png/.svg).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace esft::host::run {

struct ComparisonRow {
  std::string task, method;  // method "base" for the model before training
  std::string metric;        // the task's metric
  std::optional<double> task_metric, general_metric;
  int64_t trainable = -1, parameters = -1;  // -1: unknown
  double train_seconds = -1;
  int64_t output_bytes = -1;
};

struct ComparisonNames {
  std::string general_metric;  // e.g. "loss"; empty without general_data
};

void print_comparison(const std::vector<ComparisonRow>& rows, const ComparisonNames& names);
// compare.csv, compare.json and compare-<task>.png/.svg in `dir`.
void write_comparison(const std::filesystem::path& dir, const std::vector<ComparisonRow>& rows,
                      const ComparisonNames& names);

}  // namespace esft::host::run
