#include "cli.h"

#include <iostream>

#include "esft/compat.h"
#include "esft/error.h"
#include "esft/plugin_abi.h"
#include "esft/runtime.h"
#include "esft/version.h"
#include "distributed/environment.h"

namespace esft::host {

namespace {

std::vector<Command> all_commands() {
  // The model tools, then the ESFT pipeline in the order a run uses it.
  return {plugins_command(),  info_command(),      init_command(),  forward_command(), generate_command(),
          tokenize_command(), tokenizer_command(), chat_command(),  data_command(),    scores_command(),
          select_command(),   params_command(),    train_command(), merge_command(),   convert_adapter_command(),
          eval_command(),
          behaviour_command(), convert_command(), select_data_command(),
          run_command(), report_command(), serve_command(), launch_command(), parity_command()};
}

po::options_description global_options(GlobalOptions& g) {
  po::options_description d("Global options");
  d.add_options()
      ("plugin", po::value<std::string>(), "family plugin to use (default: chosen from config.json's model_type)")
      ("plugin-dir", po::value<std::string>(), "directory searched first for libesft_<name>.so")
      ("device", po::value<std::string>(&g.device)->default_value("auto"),
       "auto | cpu | cuda | cuda:N, or a list (cuda:0,cuda:1) to spread the layers over (scores, eval, generate, serve)")
      ("dtype", po::value<std::string>(&g.dtype)->default_value("auto"),
       "auto | float32 | bfloat16 (auto: bfloat16 on CUDA, float32 on CPU)")
      ("dist-timeout", po::value<int>(&g.dist_timeout_s)->default_value(600),
       "multi-process runs: seconds to wait for the other ranks (rendezvous and each collective) before failing")
      ("help,h", "show help (also after a command)")
      ("version", "print the version");
  return d;
}

void print_overview(std::ostream& out, const po::options_description& global) {
  out << "esft-host: expert-specialized fine-tuning of Mixture-of-Experts models\n\n"
      << "usage: esft-host [global options] <command> [command options]\n\nCommands:\n";
  for (const auto& c : all_commands()) {
    out << "  " << c.name << std::string(c.name.size() < 12 ? 12 - c.name.size() : 1, ' ') << c.summary << "\n";
  }
  out << "\n" << global << "\nRun `esft-host <command> --help` for a command's options.\n";
}

[[noreturn]] void rethrow_as_usage(const po::error& e, const std::string& command) {
  std::string what = e.what();
  if (!command.empty()) what += " (command '" + command + "'; see `esft-host " + command + " --help`)";
  else what += " (see `esft-host --help`)";
  throw UsageError(what);
}

}  // namespace

int run_cli_echoed(std::vector<std::string> argv) {
  std::cout << "$ esft-host";
  for (size_t i = 1; i < argv.size(); ++i) std::cout << " " << argv[i];
  std::cout << "\n" << std::flush;
  std::vector<char*> raw;
  for (auto& a : argv) raw.push_back(a.data());
  raw.push_back(nullptr);
  const int code = run_cli(static_cast<int>(argv.size()), raw.data());
  std::cout << std::flush;
  return code;
}

int run_cli(int argc, char** argv) {
  GlobalOptions global;
  // Everything after a standalone `--` is a command line of its own (`launch --nproc 2 -- esft-host scores ...`).
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) != "--") continue;
    global.trailing_command.assign(argv + i + 1, argv + argc);
    argc = i;
    break;
  }
  auto global_desc = global_options(global);
  po::options_description positional_desc;
  positional_desc.add_options()("command", po::value<std::string>())("args", po::value<std::vector<std::string>>());
  po::options_description all;
  all.add(global_desc).add(positional_desc);
  po::positional_options_description positional;
  positional.add("command", 1).add("args", -1);

  po::variables_map vm;
  po::parsed_options parsed(nullptr);
  try {
    parsed = po::command_line_parser(argc, argv).options(all).positional(positional).allow_unregistered().run();
    po::store(parsed, vm);
    po::notify(vm);
  } catch (const po::error& e) {
    rethrow_as_usage(e, "");
  }
  if (vm.count("plugin")) global.plugin = vm["plugin"].as<std::string>();
  if (vm.count("plugin-dir")) global.plugin_dir = vm["plugin-dir"].as<std::string>();

  if (vm.count("version")) {
    std::cout << "esft-host " << ESFT_VERSION_STRING << " (libtorch " << ESFT_TORCH_VERSION_STRING << ", plugin ABI "
              << ESFT_PLUGIN_ABI_VERSION << ")\n"
              << describe_accelerators(accelerators()) << "\n";
    return 0;
  }
  if (!vm.count("command")) {
    print_overview(vm.count("help") ? std::cout : std::cerr, global_desc);
    if (vm.count("help")) return 0;
    throw UsageError("no command given (see `esft-host --help`)");
  }

  const auto name = vm["command"].as<std::string>();
  const auto commands = all_commands();
  auto it = std::find_if(commands.begin(), commands.end(), [&](const Command& c) { return c.name == name; });
  if (it == commands.end()) throw UsageError("unknown command '" + name + "' (see `esft-host --help`)");
  const Command& command = *it;

  po::options_description command_desc("Options of '" + command.name + "'");
  command.add_options(command_desc);
  if (vm.count("help")) {
    std::cout << "usage: esft-host [global options] " << command.usage << "\n\n" << command.summary << "\n\n"
              << command_desc << "\n" << global_desc;
    return 0;
  }

  // Everything but the global options and the command name belongs to the command: its flags, and any stray
  // positional argument, which the command's parser then rejects.
  std::vector<std::string> rest;
  for (const auto& option : parsed.options) {
    if (option.string_key == "command") continue;
    if (option.unregistered || option.string_key == "args") {
      rest.insert(rest.end(), option.original_tokens.begin(), option.original_tokens.end());
    }
  }
  po::variables_map command_vm;
  try {
    // Commands take flags only (a stray word is an error), except the one bare word a command may name.
    po::positional_options_description words;
    if (!command.positional.empty()) words.add(command.positional.c_str(), 1);
    po::store(po::command_line_parser(rest).options(command_desc).positional(words).run(), command_vm);
    po::notify(command_vm);
  } catch (const po::error& e) {
    rethrow_as_usage(e, command.name);
  }
  if (!global.trailing_command.empty() && command.name != "launch") {
    throw UsageError("a command after `--` belongs to `launch` only");
  }
  if (global.dist_timeout_s <= 0) throw UsageError("--dist-timeout must be positive");
  if (global.device.find(',') != std::string::npos && !command.several_devices) {
    throw UsageError("--device " + global.device + ": " + command.name + " runs on one device; a list of devices "
                     "(the layers spread over them) is for scores, eval, generate and serve");
  }
  if (!command.multi_process) {
    if (const auto env = read_distributed_env(); env && env->world_size > 1) {
      throw UsageError(command.name + " runs as one process, but this is rank " + std::to_string(env->rank) + " of " +
                       std::to_string(env->world_size) + " (" + env->source + "); only scores and train run over "
                       "several processes");
    }
  }
  return command.run(global, command_vm);
}

}  // namespace esft::host
