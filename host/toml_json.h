#pragma once
// TOML values as JSON: tables become objects, arrays arrays, dates and times their TOML text.
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include <filesystem>

namespace esft::host {

nlohmann::json to_json(const toml::node& node);

// A TOML file as JSON. Throws esft::Error "FILE:LINE:COLUMN: what" for a file that does not parse.
nlohmann::json parse_toml_file(const std::filesystem::path& file);

}  // namespace esft::host
