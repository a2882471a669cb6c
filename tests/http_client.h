#pragma once
// A plain HTTP/1.1 client over loopback sockets, for the tests and the load benchmark of `esft-host serve`: whole
// requests, raw bytes (for malformed or slow requests), and replies with Content-Length or chunked bodies, whose
// server-sent events are handed over as they arrive. Throws std::runtime_error on socket failures.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace http_client {

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // chunked bodies decoded
  std::vector<std::string> events;             // the `data:` payloads of a text/event-stream body
  bool complete = false;                       // the whole body arrived
};

class Connection {
 public:
  explicit Connection(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      const std::string why = std::strerror(errno);
      if (fd_ >= 0) ::close(fd_);
      throw std::runtime_error("cannot connect to 127.0.0.1:" + std::to_string(port) + ": " + why);
    }
  }
  ~Connection() { close(); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  void send(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error(std::string("send: ") + std::strerror(errno));
      done += static_cast<size_t>(n);
    }
  }

  // Reads one reply. `on_event(data)` sees each server-sent event as it arrives; returning false stops reading there
  // (the reply is then incomplete). A closed connection ends the body when it has no length.
  Reply read_reply(const std::function<bool(const std::string&)>& on_event = {}, int timeout_ms = 120000) {
    Reply reply;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    size_t header_end;
    while ((header_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill(deadline)) return reply;
    }
    parse_head(buffer_.substr(0, header_end), reply);
    buffer_.erase(0, header_end + 4);
    if (reply.status == 100) return read_reply(on_event, timeout_ms);
    std::string pending_events;
    auto take = [&](const std::string& data) {
      reply.body += data;
      if (reply.headers["content-type"].rfind("text/event-stream", 0) != 0) return true;
      pending_events += data;
      size_t end;
      while ((end = pending_events.find("\n\n")) != std::string::npos) {
        std::string event = pending_events.substr(0, end);
        pending_events.erase(0, end + 2);
        if (event.rfind("data: ", 0) == 0) event.erase(0, 6);
        reply.events.push_back(event);
        if (on_event && !on_event(event)) return false;
      }
      return true;
    };
    if (reply.headers.count("content-length")) {
      const size_t length = std::stoul(reply.headers["content-length"]);
      while (buffer_.size() < length)
        if (!fill(deadline)) return reply;
      take(buffer_.substr(0, length));
      buffer_.erase(0, length);
      reply.complete = true;
    } else if (reply.headers["transfer-encoding"] == "chunked") {
      while (true) {
        size_t line_end;
        while ((line_end = buffer_.find("\r\n")) == std::string::npos)
          if (!fill(deadline)) return reply;
        const size_t size = std::stoul(buffer_.substr(0, line_end), nullptr, 16);
        while (buffer_.size() < line_end + 2 + size + 2)
          if (!fill(deadline)) return reply;
        const std::string data = buffer_.substr(line_end + 2, size);
        buffer_.erase(0, line_end + 2 + size + 2);
        if (size == 0) break;
        if (!take(data)) return reply;
      }
      reply.complete = true;
    } else {
      while (fill(deadline)) {
      }
      take(buffer_);
      buffer_.clear();
      reply.complete = true;
    }
    return reply;
  }

  // Whether the server closed the connection (within `timeout_ms`).
  bool closed_by_server(int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (fill(deadline)) {
    }
    return std::chrono::steady_clock::now() < deadline;
  }

 private:
  // Reads more bytes; false when the peer closed, or at the deadline.
  bool fill(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[16384];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  static void parse_head(const std::string& head, Reply& reply) {
    const size_t first_space = head.find(' ');
    reply.status = first_space == std::string::npos ? 0 : std::atoi(head.c_str() + first_space + 1);
    size_t at = head.find("\r\n");
    while (at != std::string::npos) {
      const size_t next = head.find("\r\n", at + 2);
      const std::string line = head.substr(at + 2, next == std::string::npos ? std::string::npos : next - at - 2);
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        size_t value = colon + 1;
        while (value < line.size() && line[value] == ' ') ++value;
        reply.headers[name] = line.substr(value);
      }
      at = next;
    }
  }

  int fd_ = -1;
  std::string buffer_;
};

// The bytes of a request with a body (Content-Length) and extra header lines ("Authorization: Bearer x").
inline std::string request_bytes(const std::string& method, const std::string& path, const std::string& body = "",
                                 const std::vector<std::string>& headers = {}, bool keep_alive = false) {
  std::string text = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  if (!body.empty() || method == "POST") {
    text += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  for (const auto& h : headers) text += h + "\r\n";
  text += keep_alive ? "\r\n" : "Connection: close\r\n\r\n";
  return text + body;
}

// One request on a fresh connection.
inline Reply request(uint16_t port, const std::string& method, const std::string& path, const std::string& body = "",
                     const std::vector<std::string>& headers = {},
                     const std::function<bool(const std::string&)>& on_event = {}) {
  Connection connection(port);
  connection.send(request_bytes(method, path, body, headers));
  return connection.read_reply(on_event);
}

}  // namespace http_client
