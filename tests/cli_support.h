#pragma once
// Running esft-host as a user meets it, for the command-line suites: the real executable as a child process, its
// exit code, stdout and stderr; and the shape every refusal must have (exactly one line `esft-host: error: ...`).
#include "doctest_torch.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "test_support.h"

extern char** environ;

namespace cli_support {

namespace fs = std::filesystem;
using test_support::read_bytes;
using test_support::TempDir;

inline const fs::path kHost = fs::path(ESFT_BIN_DIR) / "esft-host";
inline const std::string kErrorPrefix = "esft-host: error: ";

inline std::vector<std::string> entries_of(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

inline std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : " ") + s;
  return out;
}

struct Run {
  int code = -1;  // exit status; 128 + signal when killed by a signal
  std::string out, err;
  std::string command;  // for failure messages
};

// Runs esft-host with `args` (no shell: every argument reaches argv as is). The child inherits this environment
// without ESFT_PLUGIN_PATH, so plugin search depends only on the arguments; `env` adds or overrides variables.
// stdin is /dev/null; stdout and stderr go to files, so a chatty child can never block on a full pipe.
inline Run run_host(const std::vector<std::string>& args, const std::vector<std::pair<std::string, std::string>>& env = {}) {
  Run r;
  r.command = kHost.string();
  for (const auto& a : args) r.command += " '" + a + "'";

  TempDir io;
  const auto out_path = (io / "stdout").string(), err_path = (io / "stderr").string();

  std::vector<std::string> env_strings;
  for (char** e = environ; e && *e; ++e) {
    const std::string entry = *e;
    const std::string key = entry.substr(0, entry.find('='));
    const bool overridden =
        std::any_of(env.begin(), env.end(), [&](const auto& kv) { return kv.first == key; });
    if (key != "ESFT_PLUGIN_PATH" && !overridden) env_strings.push_back(entry);
  }
  for (const auto& [key, value] : env) env_strings.push_back(key + "=" + value);

  std::vector<std::string> argv_strings = {kHost.string()};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv, envp;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  REQUIRE(posix_spawn_file_actions_init(&actions) == 0);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE_MESSAGE(spawned == 0, "cannot start ", r.command, ": ", std::strerror(spawned));

  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) REQUIRE_MESSAGE(errno == EINTR, "waitpid: ", std::strerror(errno));
  if (WIFEXITED(status)) r.code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) r.code = 128 + WTERMSIG(status);
  r.out = read_bytes(out_path);
  r.err = read_bytes(err_path);
  return r;
}

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A successful run: exit 0 (stderr shown on failure).
inline void expect_success(const Run& r) {
  INFO("command: ", r.command);
  INFO("stderr: ", r.err);
  CHECK(r.code == 0);
}

// A refused run: the exit code, nothing on stdout, and on stderr exactly one line `esft-host: error: <message>\n`
// whose message contains every one of `needles`.
inline void expect_error(const Run& r, int code, std::initializer_list<std::string> needles) {
  INFO("command: ", r.command);
  INFO("stdout: ", r.out);
  INFO("stderr: ", r.err);
  CHECK(r.code == code);
  CHECK(r.out.empty());
  CHECK(r.err.rfind(kErrorPrefix, 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK((!r.err.empty() && r.err.back() == '\n'));
  for (const auto& needle : needles) CHECK_MESSAGE(contains(r.err, needle), "error should mention '", needle, "'");
}

// The tiny qwen3_moe fixture model next to the bundled tokenizer, in DIR/model, as scripts/demo.sh assembles it.
inline fs::path tiny_task_model(const TempDir& dir) {
  const auto source = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path();  // the repository
  const auto model = dir / "model";
  fs::create_directories(model);
  for (const auto& from : {fs::path(ESFT_TEST_DATA_DIR) / "hf" / "qwen3_moe" / "model", source / "examples" / "tiny-tokenizer"})
    for (const auto& e : fs::directory_iterator(from)) fs::copy_file(e.path(), model / e.path().filename());
  return model;
}

// The JSON values of a JSON-lines file (metrics.jsonl, completions), blank lines skipped.
inline std::vector<nlohmann::json> read_json_lines(const fs::path& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Sends `sig` to the esft-host processes whose arguments include `argument` (found through /proc).
inline void signal_host(int sig, const std::string& argument) {
  for (const auto& e : fs::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto cmdline = read_bytes(e.path() / "cmdline");
    std::vector<std::string> argv;
    std::string current;
    for (char c : cmdline) {
      if (c == '\0') argv.push_back(current), current.clear();
      else current += c;
    }
    if (!argv.empty() && argv[0] == kHost.string() && std::find(argv.begin(), argv.end(), argument) != argv.end()) {
      ::kill(static_cast<pid_t>(std::stol(name)), sig);
    }
  }
}

}  // namespace cli_support
