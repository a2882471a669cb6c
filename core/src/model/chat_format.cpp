#include "esft/model/chat_format.h"

#include <ctime>

#include "esft/error.h"
#include "esft/io/json_file.h"

namespace esft {

std::string join_segments(const std::vector<ChatSegment>& segments) {
  std::string out;
  for (const auto& s : segments) out += s.text;
  return out;
}

std::vector<ChatMessage> parse_chat_messages(const nlohmann::json& messages, const std::string& where) {
  if (!messages.is_array()) throw Error(where + ": \"messages\" must be a list");
  if (messages.empty()) throw Error(where + ": the conversation is empty");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    const std::string at = where + ": message " + std::to_string(i + 1);
    if (!m.is_object()) throw Error(at + " is not an object");
    if (!m.contains("role") || !m.at("role").is_string()) throw Error(at + " has no \"role\" string");
    if (!m.contains("content") || !m.at("content").is_string()) throw Error(at + " has no \"content\" string");
    ChatMessage msg;
    msg.role = m.at("role").get<std::string>();
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant") {
      throw Error(at + " has role '" + msg.role + "' (expected system, user or assistant)");
    }
    msg.content = m.at("content").get<std::string>();
    if (m.contains("reasoning_content") && !m.at("reasoning_content").is_null()) {
      if (!m.at("reasoning_content").is_string()) throw Error(at + ": \"reasoning_content\" must be a string");
      msg.reasoning_content = m.at("reasoning_content").get<std::string>();
    }
    if (m.contains("mask")) {
      const auto& mask = m.at("mask");
      if (!mask.is_number_integer() || (mask.get<int64_t>() != 0 && mask.get<int64_t>() != 1)) {
        throw Error(at + ": \"mask\" must be 0 or 1");
      }
      msg.masked = mask.get<int64_t>() == 1;
    }
    out.push_back(std::move(msg));
  }
  return out;
}

std::vector<ChatMessage> load_chat_messages(const std::filesystem::path& path) {
  const auto j = read_json_file(path);
  return parse_chat_messages(j.is_object() && j.contains("messages") ? j.at("messages") : j, path.string());
}

std::vector<ChatSegment> TemplateChatFormat::render(const std::vector<ChatMessage>& messages,
                                                    const ChatOptions& options) const {
  if (messages.empty()) throw Error("the conversation is empty");
  std::vector<ChatSegment> out;
  auto plain = [&](const std::string& text) {
    if (text.empty()) return;
    if (!out.empty() && !out.back().trainable) out.back().text += text;
    else out.push_back({text, false});
  };
  std::string preamble = spec_.preamble;
  if (auto at = preamble.find("{date}"); at != std::string::npos) {
    preamble.replace(at, 6, options.date.empty() ? today_utc() : options.date);
  }
  plain(preamble);
  if (!spec_.default_system.empty() && messages.front().role != "system") {
    plain(spec_.system.prefix + spec_.default_system + spec_.system.end + spec_.system.after);
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    const bool last = i + 1 == messages.size();
    const RoleTemplate& t = m.role == "system" ? spec_.system : m.role == "user" ? spec_.user : spec_.assistant;
    plain(t.prefix);
    const std::string& after = last ? t.after_last : t.after;
    if (m.role == "assistant") {
      std::string end = last && !spec_.end_of_last_assistant.empty() ? spec_.end_of_last_assistant : t.end;
      if (last && options.training) end += spec_.training_end_of_last_assistant;
      out.push_back({spec_.assistant_content_prefix + m.content + end, !m.masked});
    } else {
      plain(m.content + t.end);
    }
    plain(after);
  }
  if (options.add_generation_prompt) plain(spec_.generation_prompt);
  return out;
}

std::string today_utc() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buffer[16];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%d", &utc);
  return buffer;
}

}  // namespace esft
