#include "launch/launcher.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "esft/error.h"

extern char** environ;

namespace esft::host {

namespace {

using Clock = std::chrono::steady_clock;

struct Child {
  int rank = 0;
  pid_t pid = -1;
  int out = -1, err = -1;          // read ends of its stdout and stderr
  std::string out_line, err_line;  // the unfinished last line of each
  bool running = true;
  int code = 0;                    // exit code, or 128 + signal
};

// Prints each complete line of `pending` (after appending `data`) with the rank's prefix.
void relay(std::string& pending, const char* data, size_t size, int rank, std::ostream& to, bool flush_rest) {
  pending.append(data, size);
  size_t start = 0, end;
  while ((end = pending.find('\n', start)) != std::string::npos) {
    to << "[rank " << rank << "] " << pending.substr(start, end - start + 1);
    start = end + 1;
  }
  pending.erase(0, start);
  if (flush_rest && !pending.empty()) {
    to << "[rank " << rank << "] " << pending << "\n";
    pending.clear();
  }
  to.flush();
}

pid_t spawn(const LaunchSpec& spec, int rank, int out_fd, int err_fd, const sigset_t& unblocked) {
  std::vector<std::string> env_strings;
  const std::vector<std::pair<std::string, std::string>> ours = {
      {"RANK", std::to_string(rank)},          {"LOCAL_RANK", std::to_string(rank)},
      {"WORLD_SIZE", std::to_string(spec.nproc)}, {"LOCAL_WORLD_SIZE", std::to_string(spec.nproc)},
      {"MASTER_ADDR", spec.master_addr},       {"MASTER_PORT", std::to_string(spec.master_port)}};
  for (char** e = environ; e && *e; ++e) {
    const std::string entry = *e;
    const std::string key = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& [k, v] : ours) replaced |= k == key;
    if (!replaced) env_strings.push_back(entry);
  }
  for (const auto& [k, v] : ours) env_strings.push_back(k + "=" + v);
  std::vector<std::string> args = spec.command;
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setsigmask(&attributes, &unblocked);  // the launcher blocks SIGINT/SIGTERM; its children must not
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, argv[0], &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (rc != 0) throw Error("cannot start '" + spec.command[0] + "' for rank " + std::to_string(rank) + ": " + std::strerror(rc));
  return pid;
}

}  // namespace

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    if (fd >= 0) ::close(fd);
    throw Error(std::string("cannot find a free port: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

int launch_local(const LaunchSpec& spec) {
  // SIGINT/SIGTERM are taken here (and forwarded) rather than ending the launcher before its children.
  sigset_t stop_signals, previous;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, &previous);
  sigset_t unblocked;
  sigemptyset(&unblocked);

  std::vector<Child> children(static_cast<size_t>(spec.nproc));
  for (int rank = 0; rank < spec.nproc; ++rank) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) throw Error("pipe failed");
    auto& c = children[static_cast<size_t>(rank)];
    c.rank = rank;
    try {
      c.pid = spawn(spec, rank, out[1], err[1], unblocked);
    } catch (...) {
      for (auto& started : children)
        if (started.pid > 0) ::kill(started.pid, SIGKILL), ::waitpid(started.pid, nullptr, 0);
      pthread_sigmask(SIG_SETMASK, &previous, nullptr);
      throw;
    }
    ::close(out[1]);
    ::close(err[1]);
    c.out = out[0];
    c.err = err[0];
  }

  int first_failure = -1;          // rank
  int forwarded_signal = 0;
  Clock::time_point kill_at = Clock::time_point::max();
  const timespec no_wait{0, 0};
  auto stop_others = [&](int sig) {
    for (auto& c : children)
      if (c.running) ::kill(c.pid, sig);
  };
  while (true) {
    std::vector<pollfd> fds;
    std::vector<std::pair<Child*, bool>> owners;  // (child, is stderr)
    for (auto& c : children) {
      if (c.out >= 0) fds.push_back({c.out, POLLIN, 0}), owners.push_back({&c, false});
      if (c.err >= 0) fds.push_back({c.err, POLLIN, 0}), owners.push_back({&c, true});
    }
    bool any_running = false;
    for (const auto& c : children) any_running |= c.running;
    if (fds.empty() && !any_running) break;
    if (!fds.empty()) {
      ::poll(fds.data(), fds.size(), 100);
    } else {
      ::usleep(20 * 1000);
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      auto& [child, is_err] = owners[i];
      char buffer[8192];
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      std::string& pending = is_err ? child->err_line : child->out_line;
      std::ostream& to = is_err ? std::cerr : std::cout;
      if (n > 0) {
        relay(pending, buffer, static_cast<size_t>(n), child->rank, to, false);
      } else {
        relay(pending, buffer, 0, child->rank, to, true);
        ::close(fds[i].fd);
        (is_err ? child->err : child->out) = -1;
      }
    }
    for (auto& c : children) {
      if (!c.running) continue;
      int status = 0;
      if (::waitpid(c.pid, &status, WNOHANG) != c.pid) continue;
      c.running = false;
      c.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (c.code != 0 && first_failure < 0 && !forwarded_signal) {
        first_failure = c.rank;
        std::cerr << "esft-host: rank " << c.rank << " exited with code " << c.code << "; stopping the others"
                  << std::endl;
        stop_others(SIGTERM);
        kill_at = Clock::now() + spec.grace;
      }
    }
    const int sig = ::sigtimedwait(&stop_signals, nullptr, &no_wait);
    if (sig == SIGINT || sig == SIGTERM) {
      forwarded_signal = sig;
      stop_others(sig);
      if (kill_at == Clock::time_point::max()) kill_at = Clock::now() + spec.grace;
    }
    if (Clock::now() >= kill_at) {
      stop_others(SIGKILL);
      kill_at = Clock::time_point::max();
    }
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (first_failure >= 0) {
    const int code = children[static_cast<size_t>(first_failure)].code;
    throw Error("rank " + std::to_string(first_failure) + " of " + std::to_string(spec.nproc) + " failed (exit code " +
                std::to_string(code) + "); the others were stopped");
  }
  if (forwarded_signal) return 128 + forwarded_signal;
  return 0;
}

}  // namespace esft::host
