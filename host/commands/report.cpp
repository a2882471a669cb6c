// `esft-host report DIR`: report.html for a folder of esft outputs (a demo's, a pipeline's, an experiment's): the
// summary table when the folder has summary.csv, and every picture in it (routing maps, selections, coverage and
// loss curves), in one self-contained file. `run` writes the same report at the end of a pipeline.
#include <fstream>
#include <iostream>
#include <sstream>

#include "../cli.h"
#include "esft/error.h"
#include "run/html_report.h"

namespace esft::host {

Command report_command() {
  Command c;
  c.name = "report";
  c.summary = "write DIR/report.html: the summary table and every picture under DIR, in one self-contained file";
  c.usage = "report DIR [--title TEXT]";
  c.add_options = [](po::options_description& d) {
    d.add_options()("dir", po::value<std::string>()->required(), "a folder of esft outputs")(
        "title", po::value<std::string>(), "the report's title (default: esft report <folder name>)");
  };
  c.positional = "dir";
  c.run = [](const GlobalOptions&, const po::variables_map& vm) {
    const std::filesystem::path dir = vm["dir"].as<std::string>();
    if (!std::filesystem::is_directory(dir)) throw Error(dir.string() + " is not a folder");
    run::TextTable summary;
    if (std::ifstream in(dir / "summary.csv"); in) {
      std::ostringstream text;
      text << in.rdbuf();
      summary = run::parse_csv_text(text.str());
    }
    const auto name = std::filesystem::weakly_canonical(dir).filename().string();
    run::write_html_report(dir, vm.count("title") ? vm["title"].as<std::string>() : "esft report " + name, summary);
    std::cout << "wrote " << (dir / "report.html").string() << "\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
