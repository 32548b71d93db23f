// Turns the JSON documents of one scripts/bench run into the report: report.md (every figure,
// the targets first), report.json (all documents together, with the machine) and the data
// files of the bulk plot (bench/plot.gp draws them).
//
//   bench_report RESULTS_DIR
//
// Reads RESULTS_DIR/{machine,bulk,bulk_small,setup,handshake,idle,idle_standby,fairness,ws,
// arm64_idle,arm64_handshake,arm64_instructions}.json (missing ones are reported as not run).
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "bench/harness.hpp"

using namespace bench;

namespace {

const std::vector<std::pair<std::string, std::string>> sections{
    {"bulk", "1. Bulk forwarding (4 MiB writes)"},
    {"bulk_small", "1b. Bulk forwarding (64 KiB writes)"},
    {"setup", "2. Session set-up"},
    {"handshake", "3. Handshakes"},
    {"idle", "4. Idle scale"},
    {"idle_standby", "4b. Idle scale, each listener with its standby"},
    {"fairness", "5. Fairness"},
    {"ws", "6. WebSocket tunnels"},
    {"capi", "7. The C ABI (libstrelay) against stcat"},
    {"arm64_idle", "8. arm64 under qemu-user: idle scale"},
    {"arm64_handshake", "8b. arm64 under qemu-user: joins, the native relay's reference"},
    {"arm64_instructions", "8c. arm64: instructions per join, counted under qemu-user"},
};

std::string num(double v) {
  std::ostringstream out;
  const double a = std::abs(v);
  out << std::fixed << std::setprecision(a >= 1000 ? 0 : a >= 100 ? 1 : a >= 10 ? 2 : 3) << v;
  return out.str();
}

// A field of machine.json as text, whatever its JSON type.
std::string text(const json& j, const char* key) {
  if (!j.contains(key)) return "?";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

std::string cell(const json& f, const char* key) {
  return f.contains(key) ? num(f[key].get<double>()) : "-";
}

std::string target_cell(const json& f) {
  if (!f.contains("target")) return "";
  return f["target_kind"].get<std::string>() + " " + num(f["target"].get<double>());
}

std::string met_cell(const json& f) {
  if (!f.contains("met")) return "";
  return f["met"].get<bool>() ? "met" : "**not met**";
}

void figure_row(std::ostream& md, const json& f) {
  md << "| " << f["label"].get<std::string>() << " | " << cell(f, "median") << " | "
     << cell(f, "min") << " | " << cell(f, "max") << " | " << f["unit"].get<std::string>() << " | "
     << target_cell(f) << " | " << met_cell(f) << " |\n";
}

const char* table_head =
    "| figure | median | min | max | unit | target | |\n|---|---|---|---|---|---|---|\n";

// Rows: forwarder kinds; columns: pair counts. One file per metric, for plot.gp.
void write_plot_data(const json& bulk, const fs::path& dir) {
  const auto pairs = bulk["parameters"]["pairs"];
  for (const std::string metric : {"gib_per_s", "cpu_s_per_gib"}) {
    std::ofstream out(dir / ("bulk_" + metric + ".dat"));
    out << "kind";
    for (const auto& p : pairs)
      out << " " << p.get<int>() << "_pair" << (p.get<int>() == 1 ? "" : "s");
    out << "\n";
    for (const auto& kind : bulk["parameters"]["kinds"]) {
      const auto k = kind.get<std::string>();
      if (metric != "gib_per_s" && k == "direct") continue;
      out << k;
      for (const auto& p : pairs) {
        const auto id = "bulk.p" + std::to_string(p.get<int>()) + "." + k + "." + metric;
        double value = 0;
        for (const auto& f : bulk["figures"]) {
          if (f["id"] == id && f.contains("median")) value = f["median"].get<double>();
        }
        out << " " << value;
      }
      out << "\n";
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s RESULTS_DIR\n", argv[0]);
    return 2;
  }
  const fs::path dir = argv[1];
  json all = json::object();
  for (const auto& [name, title] : sections) {
    const auto path = dir / (name + ".json");
    if (fs::exists(path)) all[name] = json::parse(read_file(path));
  }
  const auto machine_path = dir / "machine.json";
  json machine = fs::exists(machine_path) ? json::parse(read_file(machine_path)) : json::object();
  all["machine"] = machine;

  std::ofstream md(dir / "report.md");
  md << "# strelay benchmark report\n\n";
  md << "Produced by `scripts/bench" << (text(machine, "mode") == "quick" ? " --quick" : "")
     << "` on " << text(machine, "date") << " (commit " << text(machine, "commit") << ").\n\n";
  md << "Machine: " << text(machine, "cpu") << ", " << text(machine, "cores") << " cores, "
     << text(machine, "os") << ", kernel " << text(machine, "kernel") << ". Load average "
     << text(machine, "load_before") << " before the run and " << text(machine, "load_after")
     << " after it.\n\n";
  md << "Every figure is the median over rounds, with min and max. Each round measures strelay "
        "and\n"
        "its references back to back, and every ratio is taken within one round. The machine is\n"
        "shared with other jobs, so absolute figures drift between rounds and runs; the ratios "
        "are\n"
        "what to compare. Loopback only; the client side (senders, receivers, the handshake\n"
        "generator) runs on the same two cores as the relay.\n\n";
  md << "![bulk throughput and CPU per GiB](bulk.svg)\n\n";

  md << "## Targets\n\n" << table_head;
  for (const auto& [name, title] : sections) {
    if (!all.contains(name)) continue;
    for (const auto& f : all[name]["figures"]) {
      if (f.contains("target")) figure_row(md, f);
    }
  }
  for (const auto& [name, title] : sections) {
    md << "\n## " << title << "\n\n";
    if (!all.contains(name)) {
      md << "Not run.\n";
      continue;
    }
    md << "Parameters: `" << all[name]["parameters"].dump() << "`\n\n" << table_head;
    for (const auto& f : all[name]["figures"]) figure_row(md, f);
    for (const auto& f : all[name]["figures"]) {
      if (f.contains("note"))
        md << "\n- " << f["label"].get<std::string>() << ": " << f["note"].get<std::string>()
           << "\n";
    }
  }
  if (all.contains("bulk")) write_plot_data(all["bulk"], dir);
  std::ofstream(dir / "report.json") << all.dump(1) << "\n";
  return 0;
}
