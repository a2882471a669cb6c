// Option values several commands share: token id lists (generate --ids, tokenize --ids) and true/false switches.
#include <sstream>

#include "cli.h"
#include "esft/error.h"

namespace esft::host {

std::vector<int64_t> parse_token_ids(const std::string& text, const std::string& flag, int64_t vocab) {
  std::vector<int64_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int64_t id = -1;
    try {
      id = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size()) throw UsageError(flag + ": '" + item + "' is not a token id (expected e.g. 1,2,3)");
    if (id < 0 || id >= vocab) {
      throw Error(flag + ": token id " + item + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
    ids.push_back(id);
  }
  if (ids.empty()) throw UsageError(flag + " is empty (expected e.g. 1,2,3)");
  return ids;
}

std::optional<bool> optional_true_false(const po::variables_map& vm, const std::string& name) {
  if (!vm.count(name)) return std::nullopt;
  const auto v = vm[name].as<std::string>();
  if (v != "true" && v != "false") throw UsageError("--" + name + " must be true or false");
  return v == "true";
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace esft::host
