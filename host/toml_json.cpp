#include "toml_json.h"

#include <sstream>

#include "esft/error.h"

namespace esft::host {

nlohmann::json to_json(const toml::node& n) {
  if (auto* t = n.as_table()) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [k, v] : *t) j[std::string(k.str())] = to_json(v);
    return j;
  }
  if (auto* a = n.as_array()) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& v : *a) j.push_back(to_json(v));
    return j;
  }
  if (auto v = n.value_exact<std::string>()) return *v;
  if (auto v = n.value_exact<int64_t>()) return *v;
  if (auto v = n.value_exact<double>()) return *v;
  if (auto v = n.value_exact<bool>()) return *v;
  std::ostringstream text;  // dates and times, as TOML writes them
  n.visit([&](const auto& v) { text << v; });
  return text.str();
}

nlohmann::json parse_toml_file(const std::filesystem::path& file) {
  try {
    return to_json(toml::parse_file(file.string()));
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    throw Error(file.string() + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": " +
                std::string(e.description()));
  }
}

}  // namespace esft::host
