// The C ABI's cost (issue 19.1): bytes per second from a node to a listening stcat through
// strelay, sent by `stcat connect` (the C++ node library, stdin from a file) and by libstrelay's
// C API in this process (strelay_stream_write from memory, waiting on STRELAY_WRITABLE), in the
// same rounds. Each run counts from its start (stcat's process start; the C API's
// strelay_node_new_from_file) to the stream's clean end, so both include the identity load,
// the connect and the close. The listener (`stcat listen --keep-listening`, its data to
// `cat >/dev/null`) is the same process for both.
//
//   capi_bench --bin DIR [--bytes 268435456] [--rounds 5]
//
// Figures: capi.stcat.mib_per_s, capi.capi.mib_per_s, and capi.ratio (C API / stcat, per
// round; target >= 0.8: the buffers between the app's thread and the loop cost little); and,
// less dependent on the machine's load, the sender's CPU seconds per GiB (stcat's from
// getrusage of reaped children; the C API's from this process, which does nothing else
// meanwhile) and their ratio capi.cpu_ratio (target <= 1.25).
#include <sys/resource.h>

#include <cstring>

#include "bench/harness.hpp"
#include "libstrelay/strelay.h"

using namespace bench;

namespace {

// CPU seconds (user + system) of this process, or of its reaped children.
double cpu_seconds(int who) {
  rusage usage{};
  ::getrusage(who, &usage);
  const auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

[[noreturn]] void capi_die(const std::string& what, int status) {
  die(what + ": " + strelay_status_name(status) + " (" + strelay_last_error() + ")");
}

// One C API run: connect, send `bytes` of zeros, end of data, wait for the listener's end of
// data (after its command ends), close. Seconds.
double capi_run(const fs::path& ident, const std::string& relay, const std::string& sink,
                std::size_t bytes) {
  const auto start = Clock::now();
  strelay_node* node = nullptr;
  strelay_stream* stream = nullptr;
  if (int s = strelay_node_new_from_file(ident.c_str(), nullptr, &node)) capi_die("node", s);
  if (int s = strelay_node_add_relay(node, relay.c_str())) capi_die("relay", s);
  if (int s = strelay_node_connect(node, sink.c_str(), &stream)) capi_die("connect", s);
  std::vector<char> chunk(1 << 20, 0);
  std::size_t sent = 0;
  while (sent < bytes) {
    const auto n = strelay_stream_write(stream, chunk.data(), std::min(chunk.size(), bytes - sent));
    if (n == STRELAY_AGAIN) {
      strelay_stream_wait(stream, STRELAY_WRITABLE, 1000);
    } else if (n < 0) {
      capi_die("write", static_cast<int>(n));
    } else {
      sent += static_cast<std::size_t>(n);
    }
  }
  strelay_stream_shutdown(stream);
  for (;;) {
    const auto n = strelay_stream_read(stream, chunk.data(), chunk.size());
    if (n == 0) break;
    if (n == STRELAY_AGAIN)
      strelay_stream_wait(stream, STRELAY_READABLE, 1000);
    else if (n < 0)
      capi_die("read", static_cast<int>(n));
  }
  strelay_stream_close(stream, STRELAY_CLOSE_NORMAL, nullptr);
  strelay_stream_wait(stream, STRELAY_ENDED, 30000);
  const int outcome = strelay_stream_status(stream);
  strelay_stream_free(stream);
  strelay_node_free(node);
  if (outcome != STRELAY_OK) capi_die("close", outcome);
  return seconds_between(start, Clock::now());
}

// One stcat run: `stcat connect` with the data file on its stdin. Seconds.
double stcat_run(const fs::path& bin, const fs::path& dir, const fs::path& data) {
  const auto start = Clock::now();
  Child child({"/bin/sh", "-c",
               "exec " + (bin / "stcat").string() + " connect --idfile " +
                   (dir / "connector.ident").string() + " --to " + (dir / "sink.friend").string() +
                   " <" + data.string()},
              dir / "stcat-connect.log");
  if (!child.wait_exit(std::chrono::minutes(5))) die("stcat connect did not end");
  const double took = seconds_between(start, Clock::now());
  if (read_file(dir / "stcat-connect.log").find("stcat:") != std::string::npos) {
    die("stcat connect failed: " + read_file(dir / "stcat-connect.log"));
  }
  return took;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags(argc, argv, {"bin", "bytes", "rounds"});
  const fs::path bin = flags.str("bin", "");
  if (bin.empty()) usage_error("--bin DIR is required");
  const auto bytes = static_cast<std::size_t>(flags.count("bytes", 268435456));
  const long rounds = flags.count("rounds", 5);
  strelay::init_crypto();
  const auto dir = scratch_dir("capi");
  auto relay = start_relay(bin, dir);
  const strelay::RelayTicket ticket{
      relay.key, strelay::parse_address("127.0.0.1:" + std::to_string(relay.endpoint.port()))};
  strelay::write_relay_ticket(dir / "r.relay", ticket, strelay::Overwrite::replace);
  const auto sink = strelay::Identity::generate();
  const auto connector = strelay::Identity::generate();
  strelay::write_identity(dir / "sink.ident", sink, strelay::Overwrite::replace);
  strelay::write_identity(dir / "connector.ident", connector, strelay::Overwrite::replace);
  strelay::write_friend_ticket(dir / "sink.friend", {sink.public_key(), {ticket}},
                               strelay::Overwrite::replace);
  {
    std::ofstream data(dir / "data", std::ios::binary);
    const std::vector<char> zeros(1 << 20, 0);
    for (std::size_t n = 0; n < bytes; n += zeros.size()) {
      data.write(zeros.data(), static_cast<std::streamsize>(std::min(zeros.size(), bytes - n)));
    }
  }
  Child listener(
      {(bin / "stcat").string(), "listen", "--idfile", (dir / "sink.ident").string(), "--relay",
       (dir / "r.relay").string(), "--allow", connector.public_key().to_base64url(),
       "--keep-listening", "--exec", "cat >/dev/null"},
      dir / "stcat-listen.log");
  std::this_thread::sleep_for(std::chrono::seconds(2));  // its listen reaches the relay

  const std::string relay_text = read_file(dir / "r.relay");
  const std::string sink_text = read_file(dir / "sink.friend");
  Figure stcat("capi.stcat.mib_per_s", "stcat connect (C++ library) to stcat listen", "MiB/s");
  Figure capi("capi.capi.mib_per_s", "libstrelay C API to stcat listen", "MiB/s");
  Figure ratio("capi.ratio", "C API / stcat, per round", "x");
  ratio.target = 0.8;
  ratio.target_is_max = false;
  Figure stcat_cpu("capi.stcat.cpu_s_per_gib", "stcat connect's CPU", "s/GiB");
  Figure capi_cpu("capi.capi.cpu_s_per_gib", "the C API sender's CPU (its process)", "s/GiB");
  Figure cpu_ratio("capi.cpu_ratio", "sender CPU, C API / stcat, per round", "x");
  cpu_ratio.target = 1.25;
  const double mib = static_cast<double>(bytes) / (1024.0 * 1024.0);
  for (long round = 0; round < rounds; ++round) {
    const double children_before = cpu_seconds(RUSAGE_CHILDREN);
    const double s = stcat_run(bin, dir, dir / "data");
    const double stcat_cpu_s = cpu_seconds(RUSAGE_CHILDREN) - children_before;
    const double self_before = cpu_seconds(RUSAGE_SELF);
    const double c = capi_run(dir / "connector.ident", relay_text, sink_text, bytes);
    const double capi_cpu_s = cpu_seconds(RUSAGE_SELF) - self_before;
    stcat.values.push_back(mib / s);
    capi.values.push_back(mib / c);
    ratio.values.push_back(s / c);
    stcat_cpu.values.push_back(stcat_cpu_s / (mib / 1024));
    capi_cpu.values.push_back(capi_cpu_s / (mib / 1024));
    cpu_ratio.values.push_back(capi_cpu_s / stcat_cpu_s);
    std::fprintf(stderr, "capi_bench: round %ld: stcat %.1f MiB/s, C API %.1f MiB/s\n", round + 1,
                 mib / s, mib / c);
  }
  json parameters{{"bytes", bytes}, {"rounds", rounds}};
  std::printf("%s\n",
              report("capi", parameters, {stcat, capi, ratio, stcat_cpu, capi_cpu, cpu_ratio})
                  .dump(1)
                  .c_str());
  fs::remove_all(dir);
  return 0;
}
