#include "esft/data/samples.h"

#include <fstream>
#include <sstream>

#include "esft/error.h"
#include "esft/tokenizer/tokenizer.h"
#include "esft/io/json_file.h"

namespace esft::data {

namespace {
std::optional<std::string> special_token(const nlohmann::json& config, const char* key) {
  if (!config.contains(key) || config.at(key).is_null()) return std::nullopt;
  const auto& v = config.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v.at("content").is_string()) return v.at("content").get<std::string>();
  throw Error(std::string("tokenizer_config.json: '") + key + "' must be a string or {\"content\": ...}");
}

const std::string& string_field(const nlohmann::json& record, const char* key, const std::string& origin) {
  const auto& v = record.at(key);
  if (!v.is_string()) throw Error(origin + ": \"" + key + "\" must be a string");
  return v.get_ref<const std::string&>();
}
}  // namespace

TokenizerConfig TokenizerConfig::load(const std::filesystem::path& path) {
  const auto file = std::filesystem::is_directory(path) ? path / "tokenizer_config.json" : path;
  TokenizerConfig c;
  if (!std::filesystem::exists(file)) return c;
  const auto j = read_json_file(file);
  c.bos_token = special_token(j, "bos_token");
  c.eos_token = special_token(j, "eos_token");
  c.pad_token = special_token(j, "pad_token");
  c.add_bos_token = j.contains("add_bos_token") && j.at("add_bos_token").is_boolean() && j.at("add_bos_token").get<bool>();
  return c;
}

SampleEncoder::SampleEncoder(const tok::Tokenizer& tokenizer, const TokenizerConfig& config, const ChatFormat& format,
                             ChatOptions options)
    : tokenizer_(tokenizer), format_(format), options_(std::move(options)) {
  options_.training = true;
  auto id_of = [&](const std::optional<std::string>& token, const char* what) -> std::optional<int32_t> {
    if (!token) return std::nullopt;
    const int32_t id = tokenizer.token_to_id(*token);
    if (id < 0) throw Error(std::string(what) + " '" + *token + "' of tokenizer_config.json is not in " + tokenizer.source());
    return id;
  };
  if (config.add_bos_token) bos_ = id_of(config.bos_token, "bos_token");
  eos_ = id_of(config.eos_token, "eos_token");
  pad_ = id_of(config.pad_token, "pad_token").value_or(0);
}

void SampleEncoder::append(Sample& s, const std::string& text, bool trainable) const {
  const auto ids = tokenizer_.encode(text);
  s.ids.insert(s.ids.end(), ids.begin(), ids.end());
  if (trainable) s.labels.insert(s.labels.end(), ids.begin(), ids.end());
  else s.labels.insert(s.labels.end(), ids.size(), kIgnoreIndex);
}

Sample SampleEncoder::encode(const nlohmann::json& record, const std::string& origin) const {
  if (!record.is_object()) throw Error(origin + ": a sample must be a JSON object");
  Sample s;
  s.origin = origin;
  try {
    if (record.contains("messages")) {
      // Segments are tokenized one by one, as the ESFT reference tokenizes message by message, so labels follow
      // them exactly. Borders sit after special tokens or a role line's break, so the ids equal those of the whole
      // text (tested on the Qwen3 fixtures) unless a message starts with whitespace that would join that break.
      for (const auto& seg : format_.render(parse_chat_messages(record.at("messages"), origin), options_)) {
        append(s, seg.text, seg.trainable);
      }
    } else if (record.contains("prompt") || record.contains("completion")) {
      if (!record.contains("prompt") || !record.contains("completion")) {
        throw Error(origin + ": a prompt/completion sample needs both \"prompt\" and \"completion\"");
      }
      if (bos_) s.ids.push_back(*bos_), s.labels.push_back(kIgnoreIndex);
      append(s, string_field(record, "prompt", origin), false);
      append(s, string_field(record, "completion", origin), true);
      if (eos_) s.ids.push_back(*eos_), s.labels.push_back(*eos_);
    } else if (record.contains("text")) {
      if (bos_) s.ids.push_back(*bos_), s.labels.push_back(kIgnoreIndex);
      append(s, string_field(record, "text", origin), true);
      if (eos_) s.ids.push_back(*eos_), s.labels.push_back(*eos_);
    } else {
      throw Error(origin + ": a sample needs \"messages\", \"prompt\" and \"completion\", or \"text\"");
    }
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind(origin, 0) == 0) throw;
    throw Error(origin + ": " + what);
  }
  if (s.ids.empty()) throw Error(origin + ": the sample has no tokens");
  return s;
}

std::vector<Sample> read_samples(const std::filesystem::path& jsonl, const SampleEncoder& encoder, ReadReport* report) {
  // Gzip-compressed files are read as they are (bundled datasets ship compressed).
  std::istringstream in(tok::read_maybe_gzipped(jsonl));
  std::vector<Sample> out;
  ReadReport r;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string origin = jsonl.string() + ":" + std::to_string(number);
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      throw Error(origin + ": malformed JSON");
    }
    ++r.lines;
    out.push_back(encoder.encode(record, origin));
    r.tokens += static_cast<int64_t>(out.back().ids.size());
    for (int32_t l : out.back().labels) r.trainable_tokens += l != kIgnoreIndex;
  }
  if (out.empty()) throw Error(jsonl.string() + ": no samples");
  r.samples = static_cast<int64_t>(out.size());
  if (report) *report = r;
  return out;
}

void keep_last_tokens(std::vector<Sample>& samples, int64_t max_tokens) {
  for (auto& s : samples) {
    if (static_cast<int64_t>(s.ids.size()) <= max_tokens) continue;
    s.ids.erase(s.ids.begin(), s.ids.end() - max_tokens);
    s.labels.erase(s.labels.begin(), s.labels.end() - max_tokens);
  }
}

void check_token_ids(const std::vector<Sample>& samples, int64_t vocab_size, int32_t pad_id) {
  if (pad_id >= vocab_size) {
    throw Error("the padding id " + std::to_string(pad_id) + " is outside the model's vocabulary of " +
                std::to_string(vocab_size));
  }
  for (const auto& s : samples) {
    for (int32_t id : s.ids) {
      if (id >= vocab_size) {
        throw Error(s.origin + ": token id " + std::to_string(id) + " is outside the model's vocabulary of " +
                    std::to_string(vocab_size));
      }
    }
  }
}

}  // namespace esft::data
