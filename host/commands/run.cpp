// `esft-host run`: a whole ESFT pipeline from one TOML file (host/run/plan.h describes the file): every task, every
// point of the sweep, each step skipped when its outputs are up to date; or, for a file with an [experiment] table,
// models trained from scratch over a grid, compared in a table and pictures (host/experiment/experiment.h); or, with
// a [select_moe] table, Select-MoE's four stages (host/select_moe/select_moe_file.h).
#include <iostream>

#include "../cli.h"
#include "esft/error.h"
#include "experiment/experiment.h"
#include "run/plan.h"
#include "run/runner.h"
#include "select_moe/select_moe_file.h"

namespace esft::host {

Command run_command() {
  Command c;
  c.name = "run";
  c.summary = "run a pipeline file (scores, select, train, merge, eval per task and sweep point), an experiment file or a "
              "Select-MoE file";
  c.usage = "run FILE.toml [--output-dir DIR] [--dry-run] [--only STEP[,STEP]] [--from STEP] [--set section.key=value]...";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("file", po::value<std::string>()->required(), "the pipeline file (also accepted as the first word after run)")
        ("output-dir", po::value<std::string>(), "where the runs go (default: ./esft-runs/<file name without .toml>)")
        ("dry-run", po::bool_switch(), "print the plan and what is up to date; run nothing")
        ("only", po::value<std::string>(), "run only these steps (scores, select, train, merge, eval)")
        ("from", po::value<std::string>(), "run this step and the ones after it")
        ("set", po::value<std::vector<std::string>>()->composing(),
         "override a setting: section.key=value with a TOML value, e.g. select.top_p=[0.1,0.2] or train.steps=50");
  };
  c.positional = "file";
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const std::filesystem::path file = vm["file"].as<std::string>();
    const auto overrides = vm.count("set") ? vm["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
    const auto output_dir = vm.count("output-dir") ? std::filesystem::path(vm["output-dir"].as<std::string>())
                                                   : std::filesystem::path("esft-runs") / file.stem();
    if (select_moe::is_select_moe_file(file)) {
      if (vm.count("only") || vm.count("from") || !overrides.empty())
        throw UsageError("--only, --from and --set are pipeline and experiment options, not Select-MoE ones");
      const auto f = select_moe::load_select_moe_file(file);  // every stage checked first
      return select_moe::run_select_moe(f, output_dir, vm["dry-run"].as<bool>(), global.plugin_dir, global.plugin);
    }
    if (experiment::is_experiment_file(file)) {
      if (vm.count("only") || vm.count("from")) throw UsageError("--only and --from are pipeline options, not experiment ones");
      const auto x = experiment::load_experiment(file, overrides, global.plugin_dir);  // every run checked first
      return experiment::run_experiment(x, {output_dir, vm["dry-run"].as<bool>()});
    }
    run::RunOptions options;
    if (vm.count("only") && vm.count("from")) throw UsageError("give --only or --from, not both");
    if (vm.count("only")) {
      options.steps.clear();
      for (const auto& s : split_commas(vm["only"].as<std::string>())) options.steps.insert(run::parse_step(s));
    }
    if (vm.count("from")) {
      const auto first = run::parse_step(vm["from"].as<std::string>());
      options.steps.clear();
      for (auto s : run::kSteps)
        if (static_cast<int>(s) >= static_cast<int>(first)) options.steps.insert(s);
    }
    options.dry_run = vm["dry-run"].as<bool>();
    options.output_dir = output_dir;
    const auto plan = run::load_plan(file, overrides);  // every check before any step
    std::cout << "pipeline " << file.string() << ": " << plan.tasks.size() << " task(s) x " << plan.runs.size()
              << " run(s) -> " << options.output_dir.string() << "\n";
    return run::execute(plan, options);
  };
  return c;
}

}  // namespace esft::host
