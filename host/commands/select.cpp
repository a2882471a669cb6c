// `esft-host select`: expert configs from routing statistics (shared/spec/ESFT.md §2).
#include <iomanip>
#include <iostream>
#include <sstream>

#include "../cli.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/pipeline/expert_selection.h"
#include "plot/routing_pictures.h"

namespace esft::host {

namespace {


// The dataset's name for --out-dir: the folder of a scores.json, or the log folder itself.
std::string dataset_name(const std::filesystem::path& path) {
  auto p = std::filesystem::weakly_canonical(path);
  if (p.filename() == "scores.json") p = p.parent_path();
  return p.filename().string();
}

void print_summary(const std::string& name, const pipeline::RoutingStats& stats, const pipeline::ExpertConfig& config,
                   pipeline::ScoreFunction function) {
  const auto scores = pipeline::expert_scores(stats, function);
  size_t selected = 0;
  std::cout << name << ": " << stats.layers.size() << " MoE layers, " << stats.num_experts << " experts, top-"
            << stats.top_k << ", " << stats.tokens << " tokens\n";
  for (const auto& [layer, experts] : config.experts) {
    double mass = 0;
    std::string list;
    for (int64_t e : experts) mass += scores.at(layer)[e], list += (list.empty() ? "" : " ") + std::to_string(e);
    selected += experts.size();
    std::cout << "  layer " << std::setw(3) << layer << ": " << std::setw(2) << experts.size() << " experts (score "
              << std::fixed << std::setprecision(4) << mass << ")  " << list << "\n";
  }
  const double total = static_cast<double>(stats.layers.size() * stats.num_experts);
  std::cout << "  selected " << selected << " of " << static_cast<int64_t>(total) << " routed experts ("
            << std::setprecision(1) << 100.0 * static_cast<double>(selected) / total << "% of expert parameters)\n";
}

}  // namespace

Command select_command() {
  Command c;
  c.name = "select";
  c.summary = "choose each layer's experts from routing statistics; write expert_config.json";
  c.usage = "select --scores PATH[,PATH...] [--score-function token|gate] [--top-p P] (--out FILE | --out-dir DIR)";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("scores", po::value<std::string>()->required(),
         "scores.json (or its folder), or a folder of the reference's expert_weights_{layer}.txt logs (or of rank_* "
         "folders of them); several, comma-separated, with --out-dir")
        ("score-function", po::value<std::string>()->default_value("token"), "token | gate")
        ("top-p", po::value<double>()->default_value(0.2), "share of the layer's score to cover, in (0, 1]")
        ("out", po::value<std::string>(), "expert_config.json to write (one --scores path)")
        ("out-dir", po::value<std::string>(), "folder for <dataset>.expert_config.json files")
        ("train-shared-experts", po::bool_switch(), "record shared_experts: true (train the shared experts too)")
        ("train-non-expert-modules", po::bool_switch(), "record non_expert_modules: true (train everything else too)")
        ("top-k", po::value<int64_t>()->default_value(0), "legacy logs only: the model's experts per token")
        ("num-experts", po::value<int64_t>()->default_value(0), "legacy logs only: the model's routed experts per layer");
  };
  c.run = [](const GlobalOptions&, const po::variables_map& vm) {
    const auto paths = split_commas(vm["scores"].as<std::string>());
    if (paths.empty()) throw UsageError("--scores is empty");
    if (vm.count("out") == vm.count("out-dir")) throw UsageError("give one of --out and --out-dir");
    if (vm.count("out") && paths.size() > 1) throw UsageError("several --scores paths need --out-dir");
    const auto function = pipeline::parse_score_function(vm["score-function"].as<std::string>());
    const double top_p = vm["top-p"].as<double>();
    if (!(top_p > 0 && top_p <= 1)) throw UsageError("--top-p must be in (0, 1]");
    if (vm.count("out")) check_output_path(vm["out"].as<std::string>(), "--out");
    if (vm.count("out-dir") && !std::filesystem::is_directory(vm["out-dir"].as<std::string>())) {
      throw Error("--out-dir: " + vm["out-dir"].as<std::string>() + " is not a directory");
    }
    // Read and select everything first: a bad input leaves no config behind.
    std::vector<std::pair<std::filesystem::path, pipeline::ExpertConfig>> outputs;
    std::vector<SelectedTask> tasks;
    for (const auto& path : paths) {
      const auto stats = pipeline::load_routing_stats(path, vm["top-k"].as<int64_t>(), vm["num-experts"].as<int64_t>());
      auto config = pipeline::select_experts(stats, function, top_p);
      config.shared_experts = vm["train-shared-experts"].as<bool>();
      config.non_expert_modules = vm["train-non-expert-modules"].as<bool>();
      print_summary(dataset_name(path), stats, config, function);
      const auto out = vm.count("out") ? std::filesystem::path(vm["out"].as<std::string>())
                                       : std::filesystem::path(vm["out-dir"].as<std::string>()) /
                                             (dataset_name(path) + ".expert_config.json");
      tasks.push_back({dataset_name(path), stats, config});
      outputs.emplace_back(out, std::move(config));
    }
    for (const auto& [out, config] : outputs) {
      write_text_atomically(out, config.to_json().dump(2) + "\n");
      std::cout << "wrote " << out.string() << "\n";
    }
    // The pictures go beside the configs: selection.{png,svg} in --out-dir, <name>.selection.{png,svg} beside --out.
    const std::filesystem::path out = outputs.front().first;
    const auto dir = vm.count("out") ? out.parent_path() : std::filesystem::path(vm["out-dir"].as<std::string>());
    const std::string prefix = vm.count("out") ? out.stem().string() + "." : "";
    write_selection_pictures(tasks, function, top_p, dir.empty() ? "." : dir, prefix);
    std::cout << "wrote " << (dir / (prefix + "selection.{png,svg}")).string() << ", " << prefix
              << "selection.csv and a coverage picture per task (<task>.coverage.{png,svg})\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
