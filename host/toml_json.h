#pragma once
// TOML values as JSON: tables become objects, arrays arrays, dates and times their TOML text.
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

namespace esft::host {

nlohmann::json to_json(const toml::node& node);

}  // namespace esft::host
