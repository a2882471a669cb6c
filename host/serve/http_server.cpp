#include "serve/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <sstream>
#include <system_error>
#include <thread>

#include "esft/error.h"

namespace esft::host::serve {

namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;

std::string HttpRequest::header(const std::string& lower_case_name) const {
  const auto it = headers.find(lower_case_name);
  return it == headers.end() ? std::string() : it->second;
}

void block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

namespace {

std::string reason_of(int status) {
  const auto reason = http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
  return reason.empty() ? "Unknown" : std::string(reason);
}

std::string error_json(const std::string& message, const std::string& type) {
  const nlohmann::json body = {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}};
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Closes after a refusal without losing the answer: closing with unread request bytes makes the kernel send a reset,
// which can discard the reply before the client reads it. Stop writing, read what is still coming for a moment
// (bounded in time and bytes), then close.
void lingering_close(int fd) {
  ::shutdown(fd, SHUT_WR);
  const auto until = Clock::now() + std::chrono::milliseconds(1000);
  char sink[4096];
  size_t drained = 0;
  while (drained < (1u << 20)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    const ssize_t n = ::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n <= 0) break;
    drained += static_cast<size_t>(n);
  }
}

// What the accept loop and a connection's thread share: whether the connection waits between requests, and whether it
// should give its place up (at the connection limit, an idle kept-alive connection makes room for a new client).
struct ConnectionFlags {
  std::atomic<bool> idle{false};
  std::atomic<bool> evict{false};
  std::atomic<bool> done{false};
};

int milliseconds_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::max<long long>(0, left));
}

// One connection: reads requests with deadlines, hands each to the handler, writes what it answers.
class Connection final : public HttpExchange {
 public:
  Connection(int fd, std::string peer, const HttpLimits& limits, const HttpHandler& handler,
             const std::function<void(const std::string&)>& log, const std::atomic<bool>& stopping,
             ConnectionFlags& flags)
      : fd_(fd), peer_(std::move(peer)), limits_(limits), handler_(handler), log_(log), stopping_(stopping),
        flags_(flags) {}
  ~Connection() override { ::close(fd_); }

  void serve() {
    while (!stopping_ && !broken_) {
      HttpRequest request;
      const int refused = read_request(request);
      if (refused < 0) return;  // closed, idle too long, or shutting down between requests
      begin_ = Clock::now();
      status_ = 0;
      bytes_ = 0;
      note_.clear();
      if (refused > 0) {
        const std::string what = refused == 431   ? "the request's headers are too large"
                                 : refused == 413 ? "the request's body is larger than " +
                                                        std::to_string(limits_.max_body_bytes) + " bytes"
                                 : refused == 408 ? "the request did not arrive in time"
                                                  : "malformed HTTP request";
        keep_alive_ = false;
        respond(refused, "application/json", error_json(what, "invalid_request_error"), {});
        log_line(request);
        lingering_close(fd_);
        return;
      }
      try {
        handler_(request, *this);
      } catch (const std::exception& e) {
        if (!responded_) respond(500, "application/json", error_json(e.what(), "server_error"), {});
      }
      if (!responded_ && !broken_) {
        respond(500, "application/json", error_json("the handler gave no answer", "server_error"), {});
      }
      if (streaming_) end_events();
      log_line(request);
      if (!keep_alive_) return;
    }
  }

  void respond(int status, const std::string& content_type, const std::string& body,
               const std::map<std::string, std::string>& extra_headers) override {
    if (responded_) return;
    responded_ = true;
    status_ = status;
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " + reason_of(status) + "\r\n";
    head += "Content-Type: " + content_type + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    for (const auto& [name, value] : extra_headers) head += name + ": " + value + "\r\n";
    head += keep_alive_ && !stopping_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    bytes_ += body.size();
    write_all(head + body);
  }

  bool start_events() override {
    if (responded_) return false;
    responded_ = streaming_ = true;
    status_ = 200;
    return write_all("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     "Transfer-Encoding: chunked\r\nConnection: " +
                     std::string(keep_alive_ && !stopping_ ? "keep-alive" : "close") + "\r\n\r\n");
  }

  bool send_event(const std::string& data) override {
    if (!streaming_ || broken_) return false;
    const std::string event = "data: " + data + "\n\n";
    std::ostringstream chunk;
    chunk << std::hex << event.size() << "\r\n" << event << "\r\n";
    bytes_ += event.size();
    return write_all(chunk.str());
  }

  void end_events() override {
    if (!streaming_) return;
    streaming_ = false;
    write_all("0\r\n\r\n");
  }

  bool client_gone() override {
    if (broken_) return true;
    pollfd p{fd_, POLLRDHUP, 0};
    if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) broken_ = true;
    return broken_;
  }

  void note(const std::string& text) override { note_ = text; }

 private:
  // Fills `request`; returns 0, a status to refuse with (400, 408, 413, 431), or -1 when the connection should
  // close without an answer (the peer closed, it stayed idle, or the server is stopping before a request began).
  int read_request(HttpRequest& request) {
    responded_ = streaming_ = false;
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes));
    parser.body_limit(limits_.max_body_bytes);
    parser.eager(true);
    bool started = !pending_.empty();
    auto deadline = Clock::now() + (started ? limits_.request_time : limits_.idle_time);
    flags_.idle = !started;
    bool sent_continue = false;
    while (true) {
      if (!pending_.empty()) {
        boost::system::error_code ec;
        const size_t used = parser.put(boost::asio::buffer(pending_), ec);
        pending_.erase(0, used);
        if (ec == http::error::header_limit) return 431;
        if (ec == http::error::body_limit) return 413;
        if (ec && ec != http::error::need_more) return 400;
        if (parser.is_done()) break;
        if (parser.is_header_done() && !sent_continue) {
          const auto& h = parser.get();
          if (const auto length = parser.content_length(); length && *length > limits_.max_body_bytes) return 413;
          const auto expect = h[http::field::expect];
          if (boost::beast::iequals(expect, "100-continue")) {
            sent_continue = true;
            if (!write_all("HTTP/1.1 100 Continue\r\n\r\n")) return -1;
          }
        }
        if (used > 0 && ec != http::error::need_more) continue;
      }
      // More bytes are needed: wait for them in short slices, to see a shutdown while idle.
      while (true) {
        if (!started && (stopping_ || flags_.evict)) return -1;
        const int left = milliseconds_left(deadline);
        if (left == 0) return started ? 408 : -1;
        pollfd p{fd_, POLLIN, 0};
        const int ready = ::poll(&p, 1, std::min(left, 200));
        if (ready < 0 && errno != EINTR) return -1;
        if (ready > 0) break;
      }
      char buffer[16384];
      const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) return started ? 400 : -1;
      if (!started) {
        flags_.idle = false;
        started = true;
        deadline = Clock::now() + limits_.request_time;
      }
      pending_.append(buffer, static_cast<size_t>(n));
    }
    auto message = parser.release();
    request.method = std::string(message.method_string());
    request.target = std::string(message.target());
    request.path = request.target.substr(0, request.target.find('?'));
    for (const auto& field : message) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      request.headers[name] = std::string(field.value());
    }
    request.body = std::move(message.body());
    request.peer = peer_;
    keep_alive_ = message.keep_alive();
    return 0;
  }

  bool write_all(const std::string& data) {
    if (broken_) return false;
    const auto deadline = Clock::now() + limits_.write_time;
    size_t done = 0;
    while (done < data.size()) {
      pollfd p{fd_, POLLOUT, 0};
      const int left = milliseconds_left(deadline);
      if (left == 0 || ::poll(&p, 1, left) <= 0 || (p.revents & (POLLERR | POLLHUP))) {
        broken_ = true;
        return false;
      }
      const ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) {
        broken_ = true;
        return false;
      }
      done += static_cast<size_t>(n);
    }
    return true;
  }

  void log_line(const HttpRequest& request) {
    const double seconds = std::chrono::duration<double>(Clock::now() - begin_).count();
    std::ostringstream line;
    line.setf(std::ios::fixed);
    line.precision(3);
    line << peer_ << " \"" << (request.method.empty() ? "-" : request.method) << " "
         << (request.target.empty() ? "-" : request.target) << "\" " << (status_ ? std::to_string(status_) : "-") << " " << bytes_ << " B " << seconds
         << " s";
    if (!note_.empty()) line << " " << note_;
    if (broken_) line << " (client gone)";
    log_(line.str());
  }

  int fd_;
  std::string peer_;
  const HttpLimits& limits_;
  const HttpHandler& handler_;
  const std::function<void(const std::string&)>& log_;
  const std::atomic<bool>& stopping_;
  ConnectionFlags& flags_;
  std::string pending_;  // bytes read past the current request (pipelining)
  bool keep_alive_ = true, responded_ = false, streaming_ = false, broken_ = false;
  int status_ = 0;
  size_t bytes_ = 0;
  std::string note_;
  Clock::time_point begin_ = Clock::now();
};

std::string peer_name(const sockaddr_storage& address) {
  char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
  ::getnameinfo(reinterpret_cast<const sockaddr*>(&address), sizeof address, host, sizeof host, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
  return std::string(host) + ":" + port;
}

}  // namespace

struct HttpServer::State {
  HttpLimits limits;
  HttpHandler handler;
  std::function<void(const std::string&)> log;
  int listener = -1;
  uint16_t port = 0;
  std::atomic<bool> stopping{false};
  struct Worker {
    std::thread thread;
    std::shared_ptr<ConnectionFlags> flags;
  };
  std::list<Worker> workers;
  std::mutex log_mutex;

  // At the connection limit: asks the connection idle the longest (the oldest in the list that waits between requests)
  // to close, and waits briefly for its place. False when every connection is busy with a request.
  bool make_room() {
    for (auto& w : workers) {
      if (w.flags->idle && !w.flags->done && !w.flags->evict) {
        w.flags->evict = true;
        for (int i = 0; i < 100 && !w.flags->done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        reap(false);
        return open_connections() < limits.max_connections;
      }
    }
    return false;
  }

  int open_connections() const {
    return static_cast<int>(std::count_if(workers.begin(), workers.end(), [](const Worker& w) { return !w.flags->done; }));
  }

  void reap(bool all) {
    for (auto it = workers.begin(); it != workers.end();) {
      if (all || it->flags->done) {
        it->thread.join();
        it = workers.erase(it);
      } else {
        ++it;
      }
    }
  }
};

HttpServer::HttpServer(const std::string& host, uint16_t port, HttpLimits limits, HttpHandler handler,
                       std::function<void(const std::string&)> access_log)
    : state_(std::make_unique<State>()) {
  auto& s = *state_;
  s.limits = limits;
  s.handler = std::move(handler);
  s.log = [this, log = std::move(access_log)](const std::string& line) {
    std::lock_guard<std::mutex> lock(state_->log_mutex);
    log(line);
  };
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0) {
    throw Error("--host '" + host + "': " + ::gai_strerror(rc));
  }
  std::string failure = "no address";
  for (addrinfo* a = found; a && s.listener < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      s.listener = fd;
    } else {
      failure = std::strerror(errno);
      ::close(fd);
    }
  }
  ::freeaddrinfo(found);
  if (s.listener < 0) throw Error("cannot listen on " + host + ":" + std::to_string(port) + ": " + failure);
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  ::getsockname(s.listener, reinterpret_cast<sockaddr*>(&bound), &length);
  s.port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

HttpServer::~HttpServer() {
  state_->stopping = true;
  state_->reap(true);
  if (state_->listener >= 0) ::close(state_->listener);
}

uint16_t HttpServer::port() const { return state_->port; }

void HttpServer::stop() { state_->stopping = true; }

std::string HttpServer::run(bool watch_signals) {
  auto& s = *state_;
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  const timespec no_wait{0, 0};
  std::string received;
  while (!s.stopping) {
    if (watch_signals) {
      const int sig = ::sigtimedwait(&signals, nullptr, &no_wait);
      if (sig == SIGINT || sig == SIGTERM) {
        received = sig == SIGINT ? "SIGINT" : "SIGTERM";
        break;
      }
    }
    s.reap(false);
    pollfd p{s.listener, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    // Non-blocking: every read and write waits in poll() with a deadline, never in the call itself (a client that
    // stops reading must not hold a thread past the write deadline).
    const int fd = ::accept4(s.listener, reinterpret_cast<sockaddr*>(&address), &length, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) continue;
    const std::string peer = peer_name(address);
    auto refuse = [&](const std::string& why) {  // answered here, without a thread
      const std::string body = error_json(why + "; try again later", "server_busy");
      const std::string reply = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + body;
      (void)!::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::shutdown(fd, SHUT_WR);
      ::close(fd);
      s.log(peer + " \"-\" 503 (" + why + ")");
    };
    if (s.open_connections() >= s.limits.max_connections && !s.make_room()) {
      refuse("too many connections");
      continue;
    }
    auto flags = std::make_shared<ConnectionFlags>();
    try {
      s.workers.push_back({std::thread([&s, fd, peer, flags] {
                             {
                               Connection connection(fd, peer, s.limits, s.handler, s.log, s.stopping, *flags);
                               connection.serve();
                             }
                             flags->done = true;
                           }),
                           flags});
    } catch (const std::system_error&) {  // no thread to be had: refuse this one, keep serving
      refuse("no thread for another connection");
    }
  }
  s.stopping = true;
  ::close(s.listener);
  s.listener = -1;
  if (!received.empty()) {
    s.log(received + ": stopped accepting; finishing the requests of " + std::to_string(s.open_connections()) +
          " open connections (a second SIGINT or SIGTERM exits at once)");
  }
  // Each connection finishes the request it is serving, then closes; a second signal does not wait for them.
  const timespec tick{0, 100 * 1000 * 1000};
  while (!s.workers.empty()) {
    s.reap(false);
    if (!watch_signals) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    const int sig = ::sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) {
      s.log(std::string(sig == SIGINT ? "SIGINT" : "SIGTERM") + " again: exiting without waiting");
      std::_Exit(128 + sig);
    }
  }
  return received;
}

}  // namespace esft::host::serve
