// `esft-host run`: a whole ESFT pipeline from one TOML file (host/run/plan.h describes the file): every task, every
// point of the sweep, each step skipped when its outputs are up to date.
#include <iostream>

#include "../cli.h"
#include "esft/error.h"
#include "run/plan.h"
#include "run/runner.h"

namespace esft::host {

Command run_command() {
  Command c;
  c.name = "run";
  c.summary = "run a pipeline file: scores, select, train, merge, eval for every task and sweep point";
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
  c.run = [](const GlobalOptions&, const po::variables_map& vm) {
    const std::filesystem::path file = vm["file"].as<std::string>();
    const auto overrides = vm.count("set") ? vm["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
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
    options.output_dir = vm.count("output-dir") ? std::filesystem::path(vm["output-dir"].as<std::string>())
                                                : std::filesystem::path("esft-runs") / file.stem();
    const auto plan = run::load_plan(file, overrides);  // every check before any step
    std::cout << "pipeline " << file.string() << ": " << plan.tasks.size() << " task(s) x " << plan.runs.size()
              << " run(s) -> " << options.output_dir.string() << "\n";
    return run::execute(plan, options);
  };
  return c;
}

}  // namespace esft::host
