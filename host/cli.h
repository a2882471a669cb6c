#pragma once
// esft-host's command line: global options, the command table, and what commands share.
#include <boost/program_options.hpp>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "esft/model/model_family.h"

namespace esft::host {

namespace po = boost::program_options;

struct GlobalOptions {
  std::optional<std::string> plugin;
  std::optional<std::filesystem::path> plugin_dir;
  std::string device = "auto";
  std::string dtype = "auto";
  std::vector<std::string> trailing_command;  // the words after a standalone `--` (launch's command)
  int dist_timeout_s = 600;  // how long a multi-process run waits for its other ranks (rendezvous, collectives)
};

struct Command {
  std::string name;
  std::string summary;                                 // one line for the command list
  std::string usage;                                   // "forward --model DIR --inputs IN --out OUT"
  std::function<void(po::options_description&)> add_options;
  std::string positional;                              // the option a bare word fills (`run FILE`); "" = none
  // Runs as several processes (torchrun, srun, `esft-host launch`; host/distributed/). The other commands refuse a
  // WORLD_SIZE above 1: every rank would do the whole work and write the same files.
  bool multi_process = false;
  // Takes `--device D1,D2,...`: the model's blocks spread over the devices in order, in one process, for a model
  // bigger than one device (inference-type commands). The others refuse a list.
  bool several_devices = false;
  std::function<int(const GlobalOptions&, const po::variables_map&)> run;
};

Command plugins_command();   // commands/plugins.cpp
Command info_command();      // commands/info.cpp
Command init_command();      // commands/init.cpp
Command forward_command();   // commands/forward.cpp
Command generate_command();  // commands/generate.cpp
Command tokenize_command();  // commands/tokenize.cpp
Command tokenizer_command();  // commands/tokenizer.cpp
Command chat_command();      // commands/chat.cpp
Command data_command();      // commands/data.cpp
Command select_command();    // commands/select.cpp
Command scores_command();    // commands/scores.cpp
Command params_command();    // commands/params.cpp
Command train_command();     // commands/train.cpp
Command merge_command();     // commands/merge.cpp
Command convert_adapter_command();  // commands/convert_adapter.cpp
Command eval_command();      // commands/eval.cpp
Command behaviour_command(); // commands/behaviour.cpp
Command convert_command();   // commands/convert.cpp
Command select_data_command(); // commands/select_data.cpp
Command run_command();       // commands/run.cpp
Command serve_command();     // commands/serve.cpp
Command launch_command();    // commands/launch.cpp
Command parity_command();    // commands/parity.cpp
Command report_command();    // commands/report.cpp

// Parses the command line and runs a command; returns the exit code. Throws esft::Error / esft::UsageError.
int run_cli(int argc, char** argv);
// run_cli on `argv` (argv[0] = "esft-host"), first printing the command as `$ esft-host ...` (pipelines and
// experiments run their steps in this process this way).
int run_cli_echoed(std::vector<std::string> argv);

// The family for a model: the one named by --plugin, else the plugin that declares the config's model_type.
std::shared_ptr<ModelFamily> resolve_family(const GlobalOptions& global, const ModelConfig& config);

struct LoadedModel {
  ModelConfig config;
  std::shared_ptr<ModelFamily> family;
  std::shared_ptr<MoECausalLM> model;
  c10::Device device = c10::Device(c10::kCPU);  // where inputs enter and outputs leave
  c10::ScalarType dtype = c10::kFloat;
  std::vector<c10::Device> block_devices;  // each block's device when --device names several; else empty
};

// config.json, plugin, device and dtype choice, weights: everything a model-running command needs. With several
// devices (`--device cuda:0,cuda:1`) the model is built and loaded on the CPU, then its blocks are spread over them
// in order (nn::place_blocks) and everything else goes to the first.
LoadedModel open_model(const GlobalOptions& global, const std::filesystem::path& model_dir);
// The model's device for messages: "cpu", or where each run of layers went ("cuda:0 (layers 0-23), cuda:1 (...)").
std::string device_text(const LoadedModel& m);

// "1,2,3" -> ids, each in [0, vocab). A malformed list is a UsageError naming `flag`; an id out of range an Error.
std::vector<int64_t> parse_token_ids(const std::string& text, const std::string& flag, int64_t vocab);

// "a,b,,c" -> {a, b, c}: comma-separated lists of paths or names.
std::vector<std::string> split_commas(const std::string& text);

// The value of a `true|false` string option, or nullopt when it is not given. UsageError for anything else.
std::optional<bool> optional_true_false(const po::variables_map& vm, const std::string& name);

// Stop tokens of greedy generation: generation_config.json's eos_token_id when present (transformers' generate
// uses it), else config.json's.
std::vector<int64_t> generation_stop_ids(const ModelConfig& config);

// Fails early (before any work) when `path` could not be created: its directory must exist.
void check_output_path(const std::filesystem::path& path, const std::string& flag);

}  // namespace esft::host
