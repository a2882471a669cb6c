#pragma once
// Chat formats: how a family renders a conversation into text, as its Hugging Face chat template does. The
// rendering comes as segments that say which text carries training labels (assistant content and the token that
// ends it), so the training data and the `chat` command share one renderer. Each family plugin provides its format.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace esft {

struct ChatMessage {
  std::string role;     // system | user | assistant
  std::string content;
  std::optional<std::string> reasoning_content;  // assistant thinking, for formats that render it (Qwen3)
  bool masked = false;  // "mask": 1 on an assistant message: rendered, but no labels
};

struct ChatOptions {
  bool add_generation_prompt = false;
  std::optional<bool> enable_thinking;  // Qwen3's template switch; unset = the template's default
  std::string date;                     // "YYYY-MM-DD" for formats that print one (gpt-oss); empty = today (UTC)
  bool training = false;                // rendering training data: a final assistant turn gets a labelled end
};

struct ChatSegment {
  std::string text;
  bool trainable = false;  // assistant content and its end token
};

class ChatFormat {
 public:
  virtual ~ChatFormat() = default;
  virtual std::string name() const = 0;
  // Throws esft::Error for a conversation the format cannot render (unknown role, empty list, ...).
  virtual std::vector<ChatSegment> render(const std::vector<ChatMessage>& messages, const ChatOptions& options) const = 0;
};

// The whole rendering as one string.
std::string join_segments(const std::vector<ChatSegment>& segments);

// `[{"role": .., "content": .., ["reasoning_content": ..], ["mask": 0|1]}, ...]` -> messages. Throws esft::Error,
// prefixed by `where`, for a non-list, an empty list, a non-object, a missing or non-string role or content, or a
// role other than system, user and assistant.
std::vector<ChatMessage> parse_chat_messages(const nlohmann::json& messages, const std::string& where);

// A conversation file: a list of messages, or an object with a "messages" list. Throws esft::Error naming the file.
std::vector<ChatMessage> load_chat_messages(const std::filesystem::path& path);

// A format made of fixed strings around each message, which covers ChatML, Tulu, GLM-4.5 and harmony:
//   preamble, then per message: prefix(role) + content + end(role) + after(role), then the generation prompt.
// For assistant messages, content and `end` are trainable; `after` is not.
struct RoleTemplate {
  std::string prefix;
  std::string end;         // the end-of-turn text (trainable for assistant messages)
  std::string after;       // text after the end of the turn, when another message follows
  std::string after_last;  // ... when this is the last message
};

struct TemplateFormatSpec {
  std::string name;
  std::string preamble;                  // before the first message; "{date}" is replaced by the date
  RoleTemplate system, user, assistant;
  std::string default_system;            // rendered as a system message when the conversation has none ("" = none)
  std::string generation_prompt;
  std::string end_of_last_assistant;     // replaces assistant.end when the assistant message is last ("" = same)
  // Text before assistant content that belongs to the content's (labelled) segment: DeepSeek-V2's space after
  // `Assistant:`, which its tokenizer joins to the first word, and which the ESFT reference labels with the answer.
  std::string assistant_content_prefix;
  // Training only (ChatOptions::training): closes a final assistant message whose format has no end-of-turn text,
  // so that a fine-tuned model learns to stop (GLM-4.5's turns end at the next role token).
  std::string training_end_of_last_assistant;
};

class TemplateChatFormat : public ChatFormat {
 public:
  explicit TemplateChatFormat(TemplateFormatSpec spec) : spec_(std::move(spec)) {}
  std::string name() const override { return spec_.name; }
  std::vector<ChatSegment> render(const std::vector<ChatMessage>& messages, const ChatOptions& options) const override;

 private:
  TemplateFormatSpec spec_;
};

// Today's date in UTC as YYYY-MM-DD.
std::string today_utc();

}  // namespace esft
