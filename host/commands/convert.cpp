// `esft-host convert`: an OLMoE model -> Select-MoE (pipeline/trash_conversion.h; shared/spec/VARIANTS.md §1): the
// routers grow trash-can rows, everything else is copied; the output is a model directory every command loads.
#include <iostream>

#include "../cli.h"
#include "../model_writer.h"
#include "esft/error.h"
#include "esft/io/json_file.h"
#include "esft/model/model_config.h"
#include "esft/pipeline/trash_conversion.h"

namespace esft::host {

namespace fs = std::filesystem;

Command convert_command() {
  Command c;
  c.name = "convert";
  c.summary = "give an OLMoE model Select-MoE's trash-can experts (router rows that add nothing when chosen)";
  c.usage = "convert --model OLMOE_DIR --out DIR [--trash-experts T] [--seed S] [--init-std 0.02]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "OLMoE model directory (model_type olmoe)")
        ("out", po::value<std::string>()->required(), "new model directory (must not exist or be empty)")
        ("trash-experts", po::value<int64_t>()->default_value(0), "trash cans per MoE layer (0 = num_experts_per_tok)")
        ("seed", po::value<uint64_t>()->default_value(0), "seed of the new router rows")
        ("init-std", po::value<double>()->default_value(0.02), "standard deviation of the new router rows")
        ("constraint-alpha", po::value<double>()->default_value(1.0), "Beta prior alpha of the trash mass")
        ("constraint-beta", po::value<double>()->default_value(5.0), "Beta prior beta of the trash mass")
        ("constraint-ratio", po::value<std::string>()->default_value("full"), "trash mass over the full softmax or the top-k slots: full | topk")
        ("constraint-weight", po::value<double>()->default_value(0.01), "the constraint's weight in router pre-training");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const fs::path model_dir = vm["model"].as<std::string>(), out = vm["out"].as<std::string>();
    pipeline::TrashConversionOptions o;
    o.trash_experts = vm["trash-experts"].as<int64_t>();
    o.seed = vm["seed"].as<uint64_t>();
    o.init_std = vm["init-std"].as<double>();
    o.constraint.alpha = vm["constraint-alpha"].as<double>();
    o.constraint.beta = vm["constraint-beta"].as<double>();
    o.constraint.ratio = parse_trash_ratio(vm["constraint-ratio"].as<std::string>(), "--constraint-ratio");
    o.constraint.weight = vm["constraint-weight"].as<double>();
    if (o.trash_experts < 0) throw UsageError("--trash-experts must be at least 1 (or 0 for num_experts_per_tok)");
    if (!(o.init_std > 0) || !(o.constraint.alpha > 0) || !(o.constraint.beta > 0) || !(o.constraint.weight >= 0))
      throw UsageError("--init-std, --constraint-alpha and --constraint-beta must be > 0, --constraint-weight >= 0");
    std::error_code ec;
    if (fs::exists(out, ec) && (!fs::is_directory(out, ec) || !fs::is_empty(out, ec)))
      throw Error("output directory " + out.string() + " exists and is not empty");

    const auto config_json = read_json_file(model_dir / "config.json");
    const auto config = ModelConfig::load(model_dir);
    const auto family = resolve_family(global, config);
    const auto checkpoint = Checkpoint::open(model_dir);
    const auto converted = pipeline::convert_to_select_moe(checkpoint, config_json, family->naming(), o);
    // The result must load as select_moe before it is written: the same family serves it.
    family->create(ModelConfig::from_json(converted.config, (out / "config.json").string()), c10::Device("meta"),
                   c10::kFloat);
    const auto parameters = write_model_directory(converted.tensors, converted.config, tokenizer_files(model_dir), out,
                                                  "esft-host convert");
    std::cout << "converted " << model_dir.string() << " to Select-MoE: " << converted.routers_grown << " routers of "
              << config.num_experts << " experts grew " << converted.trash_experts << " trash rows each (N(0, "
              << o.init_std << "), seed " << o.seed << "); " << parameters << " parameters -> " << out.string() << "\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
