#pragma once
// A local OpenAI-compatible chat-completions endpoint for the judge metrics' protocol tests: it listens on
// 127.0.0.1 (a free port), answers POST .../chat/completions one connection at a time with `reply(request)` as the
// message content, after failing the first `fail_first` requests with HTTP 500, and records every request.
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

class FakeJudge {
 public:
  struct Request {
    nlohmann::json body;
    std::string authorization;  // the Authorization header's value, or ""
  };

  FakeJudge(std::function<std::string(const nlohmann::json&)> reply, int fail_first = 0)
      : reply_(std::move(reply)), fail_first_(fail_first) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    ::listen(listener_, 16);
    socklen_t length = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeJudge() {
    stop_ = true;
    thread_.join();
    ::close(listener_);
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  std::vector<Request> requests() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int connection = ::accept(listener_, nullptr, nullptr);
      if (connection >= 0) answer(connection);
    }
  }

  void answer(int connection) {
    std::string data;
    char buffer[4096];
    size_t header_end = std::string::npos, body_length = 0;
    while (true) {
      const ssize_t n = ::recv(connection, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      data.append(buffer, static_cast<size_t>(n));
      if (header_end == std::string::npos && (header_end = data.find("\r\n\r\n")) != std::string::npos) {
        const auto at = lower(data.substr(0, header_end)).find("content-length:");
        if (at != std::string::npos) body_length = std::stoul(data.substr(at + 15));
      }
      if (header_end != std::string::npos && data.size() >= header_end + 4 + body_length) break;
    }
    Request r;
    if (header_end != std::string::npos) {
      r.body = nlohmann::json::parse(data.substr(header_end + 4, body_length), nullptr, false);
      const auto headers = data.substr(0, header_end);
      const auto at = lower(headers).find("authorization: ");
      if (at != std::string::npos) r.authorization = headers.substr(at + 15, headers.find("\r\n", at) - at - 15);
    }
    std::string status = "200 OK", body;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      requests_.push_back(r);
      if (static_cast<int>(requests_.size()) <= fail_first_) status = "500 Internal Server Error";
    }
    if (status == "200 OK") {
      body = nlohmann::json{{"id", "x"}, {"object", "chat.completion"},
                            {"choices", {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", reply_(r.body)}}},
                                          {"finish_reason", "stop"}}}}}
                 .dump();
    } else {
      body = R"({"error": {"message": "busy"}})";
    }
    const std::string response = "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nContent-Length: " +
                                 std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    ::send(connection, response.data(), response.size(), MSG_NOSIGNAL);
    ::close(connection);
  }

  static std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }

  std::function<std::string(const nlohmann::json&)> reply_;
  int fail_first_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mutex_;
  std::vector<Request> requests_;
};
