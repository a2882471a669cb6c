#include "esft/tokenizer/tokenizer.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <optional>
#include <unordered_map>

#include "esft/error.h"
#include "esft/io/json_file.h"
#include "esft/tokenizer/bpe.h"
#include "esft/tokenizer/byte_level.h"
#include "esft/tokenizer/regex_split.h"
#include "esft/tokenizer/utf8.h"

namespace esft::tok {

namespace {


// Leftmost-longest matching of a set of added tokens (the Rust library's Aho-Corasick with LeftmostLongest).
class AddedTokenMatcher {
 public:
  void add(const AddedToken& t) {
    auto& list = by_first_byte_[static_cast<unsigned char>(t.content[0])];
    list.push_back(&t);
    std::stable_sort(list.begin(), list.end(), [](auto* a, auto* b) { return a->content.size() > b->content.size(); });
  }
  bool empty() const {
    for (const auto& l : by_first_byte_)
      if (!l.empty()) return false;
    return true;
  }
  struct Match {
    size_t begin, end;  // with lstrip/rstrip whitespace
    const AddedToken* token;
  };
  // The first match at or after `from`; whitespace taken by lstrip never reaches before `floor`.
  std::optional<Match> find(std::string_view text, size_t from, size_t floor) const {
    for (size_t pos = from; pos < text.size(); ++pos) {
      const auto& candidates = by_first_byte_[static_cast<unsigned char>(text[pos])];
      for (const auto* t : candidates) {
        if (text.compare(pos, t->content.size(), t->content) != 0) continue;
        Match m{pos, pos + t->content.size(), t};
        if (t->lstrip) m.begin = whitespace_start(text, floor, pos);
        if (t->rstrip) m.end = whitespace_end(text, m.end);
        return m;
      }
    }
    return std::nullopt;
  }

 private:
  static size_t whitespace_start(std::string_view text, size_t floor, size_t pos) {
    // Walk back over whole code points while they are whitespace.
    size_t begin = pos;
    while (begin > floor) {
      size_t start = begin - 1;
      while (start > floor && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
      size_t p = start;
      if (!is_unicode_whitespace(next_code_point(text, p))) break;
      begin = start;
    }
    return begin;
  }
  static size_t whitespace_end(std::string_view text, size_t end) {
    while (end < text.size()) {
      size_t p = end;
      if (!is_unicode_whitespace(next_code_point(text, p))) break;
      end = p;
    }
    return end;
  }
  std::array<std::vector<const AddedToken*>, 256> by_first_byte_;
};

bool is_type(const nlohmann::json& j, const char* type) { return j.is_object() && j.value("type", std::string()) == type; }

}  // namespace

struct Tokenizer::Impl {
  std::string source;
  std::vector<AddedToken> added;
  AddedTokenMatcher raw_matcher, normalized_matcher;
  std::unordered_map<int32_t, const AddedToken*> added_by_id;
  std::unordered_map<std::string, int32_t> added_by_content;
  bool nfc = false;
  bool add_prefix_space = false;
  std::unique_ptr<RegexSplit> split;
  std::unique_ptr<BpeModel> bpe;

  [[noreturn]] void unsupported(const std::string& what) const {
    throw Error(source + ": " + what + " is not supported");
  }

  void read_normalizer(const nlohmann::json& n) {
    if (n.is_null()) return;
    if (is_type(n, "NFC")) {
      nfc = true;
    } else if (is_type(n, "Sequence") && n.at("normalizers").size() == 1 && is_type(n.at("normalizers")[0], "NFC")) {
      nfc = true;
    } else {
      unsupported("normalizer " + n.dump());
    }
  }

  void read_byte_level(const nlohmann::json& b, bool regex_allowed) {
    add_prefix_space = b.value("add_prefix_space", false);
    if (b.value("use_regex", true)) {
      if (!regex_allowed) unsupported("ByteLevel use_regex after a Split pre-tokenizer");
      split = std::make_unique<RegexSplit>(kGpt2Pattern);
    }
  }

  void read_pre_tokenizer(const nlohmann::json& p) {
    if (is_type(p, "ByteLevel")) return read_byte_level(p, true);
    if (is_type(p, "Sequence")) {
      const auto& list = p.at("pretokenizers");
      if (list.size() == 2 && is_type(list[0], "Split") && is_type(list[1], "ByteLevel")) {
        const auto& s = list[0];
        if (s.value("behavior", std::string()) != "Isolated" || s.value("invert", false) || !s.at("pattern").contains("Regex")) {
          unsupported("Split pre-tokenizer " + s.dump() + " (only Regex patterns, Isolated, not inverted)");
        }
        split = std::make_unique<RegexSplit>(s.at("pattern").at("Regex").get<std::string>());
        return read_byte_level(list[1], false);
      }
    }
    unsupported("pre-tokenizer " + p.dump().substr(0, 200));
  }

  // Ids of a stretch of text with no raw added token in it.
  void encode_plain(std::string_view text, std::vector<int32_t>& ids) const {
    std::string normalized_storage;
    std::string_view normalized = text;
    if (nfc) normalized = normalized_storage = tok::nfc(text);
    if (normalized_matcher.empty()) return pre_tokenize(normalized, ids);
    size_t pos = 0;
    while (auto m = normalized_matcher.find(normalized, pos, pos)) {
      pre_tokenize(normalized.substr(pos, m->begin - pos), ids);
      ids.push_back(m->token->id);
      pos = m->end;
    }
    pre_tokenize(normalized.substr(pos), ids);
  }

  void pre_tokenize(std::string_view text, std::vector<int32_t>& ids) const {
    if (text.empty()) return;
    std::string prefixed;
    if (add_prefix_space && text.front() != ' ') text = prefixed = " " + std::string(text);
    if (!split) return bpe->encode(text, ids);
    split->split(text, [&](size_t begin, size_t end) { bpe->encode(text.substr(begin, end - begin), ids); });
  }
};

Tokenizer Tokenizer::from_json(const nlohmann::json& j, const std::string& source) {
  auto impl = std::make_shared<Impl>();
  impl->source = source;
  try {
    if (!j.is_object() || !j.contains("model")) throw Error(source + ": not a tokenizer.json (no model)");
    impl->bpe = std::make_unique<BpeModel>(j.at("model"));
    impl->read_normalizer(j.value("normalizer", nlohmann::json()));
    impl->read_pre_tokenizer(j.value("pre_tokenizer", nlohmann::json()));
    const auto decoder = j.value("decoder", nlohmann::json());
    if (!is_type(decoder, "ByteLevel")) impl->unsupported("decoder " + decoder.dump());

    for (const auto& a : j.value("added_tokens", nlohmann::json::array())) {
      AddedToken t;
      const auto id = json_get<int32_t>(a.at("id"));
      if (!id) throw Error(source + ": the id of an added token must be an integer, got " + json_excerpt(a.at("id")));
      t.id = *id;
      t.content = a.at("content").get<std::string>();
      t.special = a.value("special", false);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.normalized = a.value("normalized", false);
      if (a.value("single_word", false)) impl->unsupported("single_word added token '" + t.content + "'");
      if (t.content.empty() || t.id < 0) throw Error(source + ": an added token has no content or a negative id");
      impl->added.push_back(std::move(t));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": malformed tokenizer.json (" + e.what() + ")");
  }
  // Pointers into `added` are taken only now that it no longer grows.
  for (const auto& t : impl->added) {
    (t.normalized ? impl->normalized_matcher : impl->raw_matcher).add(t);
    impl->added_by_id[t.id] = &t;
    impl->added_by_content[t.content] = t.id;
  }
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
  auto file = std::filesystem::is_directory(path) ? path / "tokenizer.json" : path;
  const auto text = read_maybe_gzipped(file);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(file.string() + ": malformed JSON (" + e.what() + ")");
  }
  return from_json(j, file.string());
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  if (!is_valid_utf8(text)) throw Error("text to tokenize is not valid UTF-8");
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);
  size_t pos = 0;
  while (auto m = impl_->raw_matcher.find(text, pos, pos)) {
    impl_->encode_plain(text.substr(pos, m->begin - pos), ids);
    ids.push_back(m->token->id);
    pos = m->end;
  }
  impl_->encode_plain(text.substr(pos), ids);
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const auto& byte_level = ByteLevel::get();
  std::string bytes;
  for (int32_t id : ids) {
    auto added = impl_->added_by_id.find(id);
    if (added != impl_->added_by_id.end()) {
      if (skip_special_tokens && added->second->special) continue;
      // The ByteLevel decoder maps a token's characters back to bytes when all of them are byte-level
      // characters, and keeps the token's own UTF-8 otherwise.
      std::string raw;
      bytes += byte_level.decode(added->second->content, raw) ? raw : added->second->content;
      continue;
    }
    if (const auto* raw = impl_->bpe->bytes_of(id)) {
      bytes += *raw;
    } else if (id >= 0 && static_cast<size_t>(id) < impl_->bpe->size() && !impl_->bpe->tokens()[id].empty()) {
      bytes += impl_->bpe->tokens()[id];
    } else {
      throw Error("token id " + std::to_string(id) + " is not in the vocabulary of " + impl_->source);
    }
  }
  return utf8_lossy(bytes);
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->added_by_content.find(std::string(token));
  if (it != impl_->added_by_content.end()) return it->second;
  std::string raw;
  if (!ByteLevel::get().decode(token, raw)) return -1;
  const int32_t id = impl_->bpe->id_of_bytes(raw);
  return id >= 0 && impl_->bpe->tokens()[id] == token ? id : -1;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  auto added = impl_->added_by_id.find(id);
  if (added != impl_->added_by_id.end()) return added->second->content;
  if (id < 0 || static_cast<size_t>(id) >= impl_->bpe->size() || impl_->bpe->tokens()[id].empty()) {
    throw Error("token id " + std::to_string(id) + " is not in the vocabulary of " + impl_->source);
  }
  return impl_->bpe->tokens()[id];
}

size_t Tokenizer::vocab_size() const {
  size_t n = impl_->bpe->size();
  for (const auto& t : impl_->added) n = std::max(n, static_cast<size_t>(t.id) + 1);
  return n;
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
const std::string& Tokenizer::source() const { return impl_->source; }

std::string read_maybe_gzipped(const std::filesystem::path& path) {
  // gzread passes uncompressed files through unchanged.
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Error("cannot open " + path.string());
  std::string out;
  char buffer[1 << 16];
  for (;;) {
    const int n = gzread(f, buffer, sizeof(buffer));
    if (n < 0) {
      int code = 0;
      const std::string message = gzerror(f, &code);
      gzclose(f);
      throw Error("cannot read " + path.string() + ": " + message);
    }
    if (n == 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  gzclose(f);
  return out;
}

}  // namespace esft::tok
