// `esft-host select-data`: Select-MoE's stage 2 (pipeline/data_selection.h; shared/spec/VARIANTS.md §1). A model with
// trash cans (convert, then train --method router) scores every record of the data files by the routing mass it
// keeps away from the trash; the best fraction is written, with every score and a histogram.
#include <chrono>
#include <fstream>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "../cli.h"
#include "esft/data/samples.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/pipeline/any_adapter.h"
#include "esft/pipeline/data_selection.h"
#include "esft/tokenizer/tokenizer.h"
#include "plot/plot.h"

namespace esft::host {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Record {
  std::string dataset;
  json id;
  json content;  // the record as read
};

// "data/dolly.jsonl.gz" -> "dolly".
std::string dataset_name(const fs::path& file) {
  auto name = file.filename().string();
  for (const char* ext : {".gz", ".jsonl", ".json"})
    if (name.size() > std::string(ext).size() && name.compare(name.size() - std::string(ext).size(), std::string::npos, ext) == 0)
      name.resize(name.size() - std::string(ext).size());
  return name;
}

// The scores in `bins` equal-width bins over [lo, hi]: counts and the bins' labels (their lower edges).
struct Histogram {
  std::vector<double> counts;
  std::vector<std::string> labels;
};
Histogram histogram(const std::vector<double>& scores, int bins) {
  const auto [lo_it, hi_it] = std::minmax_element(scores.begin(), scores.end());
  const double lo = *lo_it, hi = *hi_it, width = hi > lo ? (hi - lo) / bins : 1.0;
  Histogram h{std::vector<double>(static_cast<size_t>(bins), 0.0), {}};
  for (double s : scores) h.counts[std::min<size_t>(static_cast<size_t>((s - lo) / width), static_cast<size_t>(bins) - 1)] += 1;
  for (int b = 0; b < bins; ++b) {
    std::ostringstream label;
    label << std::fixed << std::setprecision(4) << lo + b * width;
    h.labels.push_back(label.str());
  }
  return h;
}

}  // namespace

Command select_data_command() {
  Command c;
  c.name = "select-data";
  c.summary = "Select-MoE: score data by the routing mass a trash-can model keeps from the trash, keep the best";
  c.usage = "select-data --model DIR [--adapter DIR] --data FILE.jsonl[,FILE...] --out DIR [--fraction 0.05]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "a Select-MoE model directory (convert)")
        ("adapter", po::value<std::string>(), "its pre-trained routers (OUT/adapter of train --method router)")
        ("data", po::value<std::string>()->required(), "JSON lines files, comma-separated (messages | prompt/completion | text)")
        ("out", po::value<std::string>()->required(), "folder for selected_data.jsonl, scores.jsonl and the histogram")
        ("fraction", po::value<double>()->default_value(0.05), "share of the records to keep, in (0, 1]")
        ("batch-size", po::value<int64_t>()->default_value(16), "records per forward pass")
        ("max-length", po::value<int64_t>()->default_value(512), "longer records are scored on their first tokens");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const double fraction = vm["fraction"].as<double>();
    if (!(fraction > 0 && fraction <= 1)) throw UsageError("--fraction must be in (0, 1]");
    pipeline::QualityOptions qo;
    qo.batch_size = vm["batch-size"].as<int64_t>();
    qo.max_length = vm["max-length"].as<int64_t>();
    if (qo.batch_size < 1 || qo.max_length < 1) throw UsageError("--batch-size and --max-length must be positive");
    const fs::path model_dir = vm["model"].as<std::string>();
    fs::path out = fs::path(vm["out"].as<std::string>()).lexically_normal();
    if (out.filename().empty()) out = out.parent_path();  // "DIR/"
    const auto files = split_commas(vm["data"].as<std::string>());
    if (files.empty()) throw UsageError("--data names no file");
    for (const auto& f : files)
      if (!fs::is_regular_file(f)) throw Error("data file " + f + " does not exist");
    std::error_code ec;
    if (fs::exists(out, ec) && (!fs::is_directory(out, ec) || !fs::is_empty(out, ec)))
      throw Error("output folder " + out.string() + " exists and is not empty");
    std::optional<pipeline::AnyAdapter> adapter;  // opened and checked before the expensive load
    if (vm.count("adapter")) {
      adapter = pipeline::AnyAdapter::open(vm["adapter"].as<std::string>());
      adapter->check_base(model_dir);
    }

    const auto tokenizer = tok::Tokenizer::load(model_dir);
    const auto special = data::TokenizerConfig::load(model_dir);
    auto m = open_model(global, model_dir);
    if (adapter) adapter->apply(*m.model, model_dir);
    const data::SampleEncoder encoder(tokenizer, special, m.family->chat_format());

    // Every record, as read and as the model sees it.
    std::vector<Record> records;
    std::vector<data::Sample> samples;
    for (const auto& file : files) {
      std::istringstream in(tok::read_maybe_gzipped(file));
      int64_t line_no = 0, index = 0;
      for (std::string line; std::getline(in, line);) {
        ++line_no;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        const auto origin = file + ":" + std::to_string(line_no);
        auto j = json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object()) throw Error(origin + ": not a JSON object");
        samples.push_back(encoder.encode(j, origin));
        if (j.contains("dataset") && !j["dataset"].is_string()) throw Error(origin + ": \"dataset\" must be a string");
        records.push_back({j.value("dataset", dataset_name(file)), j.contains("id") ? j["id"] : json(index), j});
        ++index;
      }
    }
    if (records.empty()) throw Error("the data files hold no records");
    if (static_cast<double>(records.size()) * fraction + 1e-9 < 1) {
      throw Error("--fraction " + std::to_string(fraction) + " of " + std::to_string(records.size()) +
                  " records keeps none");
    }
    data::check_token_ids(samples, m.config.vocab_size, encoder.pad_id());

    const auto start = std::chrono::steady_clock::now();
    const auto quality = pipeline::score_quality(*m.model, samples, encoder.pad_id(), m.device, qo,
                                                 [&](size_t done, size_t total) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::cerr << "\rscoring " << done << "/" << total << "  " << std::fixed << std::setprecision(0)
                << static_cast<double>(done) / std::max(s, 1e-9) << " records/s  ETA "
                << s / static_cast<double>(done) * static_cast<double>(total - done) << " s   " << std::flush;
    });
    std::cerr << "\n";
    const auto best = pipeline::select_best(quality, fraction);

    // Every output goes into a staging folder that becomes `out` only when all are written.
    if (!out.parent_path().empty()) fs::create_directories(out.parent_path());
    AtomicDirectory staged(out);
    {
      std::ofstream scores(staged.path() / "scores.jsonl");
      for (size_t i = 0; i < records.size(); ++i)
        scores << json{{"dataset", records[i].dataset}, {"id", records[i].id}, {"score", quality[i]}}.dump() << "\n";
      std::ofstream selected(staged.path() / "selected_data.jsonl");
      for (size_t i : best) {
        json row = {{"dataset", records[i].dataset}, {"id", records[i].id}, {"score", quality[i]}};
        for (const char* field : {"messages", "prompt", "completion", "text"})
          if (records[i].content.contains(field)) row[field] = records[i].content[field];
        selected << row.dump() << "\n";
      }
      if (!scores.flush() || !selected.flush()) throw Error("cannot write into " + staged.path().string());
    }

    // The distribution of scores: a picture and the same as text.
    const auto h = histogram(quality, 20);
    plot::BarChart chart;
    chart.title = "Select-MoE quality scores (" + std::to_string(records.size()) + " records)";
    chart.x_label = "quality (1 - trash mass), bin lower edge";
    chart.y_label = "records";
    chart.groups = h.labels;
    chart.bars.push_back({"records", h.counts});
    plot::save(chart, staged.path() / "score_histogram", {1000, 500});
    staged.commit();
    const double peak = *std::max_element(h.counts.begin(), h.counts.end());
    std::cout << "score histogram (" << records.size() << " records):\n";
    for (size_t b = 0; b < h.counts.size(); ++b) {
      std::cout << "  " << h.labels[b] << "  " << std::setw(6) << static_cast<int64_t>(h.counts[b]) << "  "
                << std::string(static_cast<size_t>(std::lround(40.0 * h.counts[b] / peak)), '#') << "\n";
    }
    std::cout << "selected " << best.size() << " of " << records.size() << " records (fraction " << fraction << ")";
    if (!best.empty()) {
      std::cout << ", scores " << std::setprecision(4) << std::fixed << quality[best.back()] << " to "
                << quality[best.front()];
    }
    std::cout << "\nwrote " << (out / "selected_data.jsonl").string() << ", " << (out / "scores.jsonl").string()
              << ", " << (out / "score_histogram").string() << ".{png,svg}\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
