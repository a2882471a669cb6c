#pragma once
// `esft-host serve` as a child process on a free loopback port, for the server's tests and load benchmark: started
// with the given arguments, ready once it prints the address it serves, stopped by a signal. Its standard error (the
// start line, the access log, the shutdown lines) goes to a file that log() reads. Throws std::runtime_error.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

class ServeProcess {
 public:
  ServeProcess(const std::filesystem::path& host, std::vector<std::string> args,
               const std::vector<std::pair<std::string, std::string>>& env = {}) {
    std::string folder = (std::filesystem::temp_directory_path() / "esft-serve-XXXXXX").string();  // mkdtemp's pattern
    if (!::mkdtemp(folder.data())) throw std::runtime_error("cannot make a folder like " + folder);
    dir_ = folder;
    std::vector<std::string> argv_strings = {host.string(), "serve", "--port", "0"};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<std::string> env_strings;
    for (char** e = environ; e && *e; ++e) env_strings.push_back(*e);
    for (const auto& [key, value] : env) env_strings.push_back(key + "=" + value);
    std::vector<char*> argv, envp;
    for (auto& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    const std::string err = (dir_ / "stderr").string();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int spawned = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (spawned != 0) throw std::runtime_error("cannot start " + host.string());
    // Ready when the start line names the port (the model loads first).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (port_ == 0) {
      const std::string text = log();
      const auto at = text.find("at http://127.0.0.1:");
      if (at != std::string::npos) port_ = static_cast<uint16_t>(std::atoi(text.c_str() + at + 20));
      if (port_) break;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        give_up();
        throw std::runtime_error("esft-host serve ended before serving: " + text);
      }
      if (std::chrono::steady_clock::now() > deadline) {
        give_up();
        throw std::runtime_error("esft-host serve did not start: " + text);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~ServeProcess() { give_up(); }
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string log() const {
    std::ifstream in(dir_ / "stderr");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  void send_signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // Sends `sig` and waits (up to `timeout`) for the exit; returns the exit status (128 + signal when killed).
  int stop(int sig = SIGTERM, std::chrono::seconds timeout = std::chrono::seconds(120)) {
    send_signal(sig);
    return wait_for_exit(timeout);
  }
  // Waits (up to `timeout`, then kills it) for the exit; returns the exit status (128 + signal when killed).
  int wait_for_exit(std::chrono::seconds timeout = std::chrono::seconds(120)) {
    if (pid_ <= 0) return exit_code_;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) != pid_) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }

 private:
  // Kills the child if it still runs and removes the folder (also when the constructor throws).
  void give_up() {
    if (pid_ > 0) stop(SIGKILL);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::filesystem::path dir_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  int exit_code_ = -1;
};
