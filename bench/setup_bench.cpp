// Session set-up (issue 6, measurement 2): the time from the connector's TCP connect to the
// first byte read by the listener, one session at a time, for
//
//   tcp        a plain TCP connection to the listener
//   forwarder  through bench/splice_forwarder
//   relay      through strelay: Connect (hop handshake), IncomingConnection, Accept (hop
//              handshake), Connected on both, then one raw byte through the tunnel
//   relay_e2e  the same, then the nodes' end-to-end handshake and one byte in a Stream
//   relay_standby, relay_standby_e2e
//              the same two, but the listener's Accept rides on a standby connection (its hop
//              handshake done before the session, as a node does between sessions; issue 17.2):
//              one hop handshake and a round trip on the critical path. The standby's
//              handshake is made within the round, so the relay's CPU per session includes it.
//
// All four run in each round (the same minute), on one client thread, so the client's own
// crypto is on the critical path exactly as it would be for one real node pair. The relay's
// CPU per session is its utime+stime over a round / sessions.
//
// --standby 0 leaves the two standby kinds out, for a relay that predates them (the "before"
// of docs/performance.md, issue 17.2). The relay's per-source connect rate is lifted: 1000
// sessions from 8 source addresses would otherwise meet its burst of 100 each.
//
// relay_early_e2e, relay_standby_early_e2e: relay_e2e and relay_standby_e2e with the end-to-end
// msg1 in Connect (issue 17.2; docs/protocol.md 4.4): the pipe carries msg2 then msg3 only.
// --early 0 leaves them out, for a relay that predates them.
//
// --threads N gives the relays N worker threads (default: one per core).
// --kinds a,b runs only those kinds (the figures that compare two kinds need both).
// --reference-bin DIR starts a second relay from DIR (e.g. /work/main/build/bin) and runs each
// relay kind against it too, in the same rounds, as "reference_KIND" (issue 17.2: the relay's
// CPU per session before and after, as a ratio within each round).
//
//   setup_bench --bin DIR [--sessions 1000] [--rounds 5] [--round-limit 120] [--standby 0]
//               [--early 0] [--kinds LIST] [--reference-bin DIR] [--threads N]
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "bench/harness.hpp"
#include "bench/pairing.hpp"
#include "common/early_e2e.hpp"
#include "common/stream.hpp"

using namespace bench;
using namespace asio::experimental::awaitable_operators;

namespace {

const std::vector<std::string> all_kinds{
    "tcp",           "forwarder",         "relay",           "relay_e2e",
    "relay_standby", "relay_standby_e2e", "relay_early_e2e", "relay_standby_early_e2e"};

struct Context {
  Hop hop;
  tcp::endpoint sink;       // the listener of tcp and forwarder sessions
  tcp::endpoint forwarder;  // splice forwarder -> sink
  Identity connector = Identity::generate();
  Identity listener = Identity::generate();
};

// One plain session: connect to `to`, write a byte; the sink accepts and reads it.
asio::awaitable<double> plain_session(tcp::acceptor& sink, tcp::endpoint to, std::size_t i) {
  const auto executor = co_await asio::this_coro::executor;
  std::array<std::uint8_t, 1> byte{42};
  const auto t0 = Clock::now();
  Clock::time_point t1;
  tcp::socket out(executor);
  out.open(tcp::v4());
  out.bind(tcp::endpoint(source_address(i), 0));
  tcp::socket in(executor);
  auto send = [&]() -> asio::awaitable<void> {
    co_await out.async_connect(to, asio::use_awaitable);
    out.set_option(tcp::no_delay(true));
    co_await asio::async_write(out, asio::buffer(byte), asio::use_awaitable);
  };
  auto receive = [&]() -> asio::awaitable<void> {
    co_await sink.async_accept(in, asio::use_awaitable);
    std::array<std::uint8_t, 1> got{};
    co_await asio::async_read(in, asio::buffer(got), asio::use_awaitable);
    t1 = Clock::now();
  };
  co_await (send() && receive());
  co_return seconds_between(t0, t1);
}

// The listener's side over its standby: the IncomingConnection on `listening`, Accept{from} as
// a frame on `standby`, the outcome, the socket.
asio::awaitable<std::error_code> standby_acceptor_side(Channel& listening, Channel& standby,
                                                       std::optional<tcp::socket>& out,
                                                       PublicKey& from) {
  if (auto ec = co_await await_incoming(listening, from)) co_return ec;
  const auto accept = strelay::encode(strelay::NodeMessage{strelay::Accept{from}});
  if (auto ec = co_await standby.send(strelay::FrameKind::control, accept,
                                      deadline_in(std::chrono::seconds(20))))
    co_return ec;
  PublicKey peer;
  if (auto ec =
          co_await strelay::await_pairing(standby, deadline_in(std::chrono::seconds(20)), peer))
    co_return ec;
  out.emplace(standby.release_socket());
  co_return std::error_code{};
}

// One session through the relay; with `e2e`, the end-to-end handshake and a Stream too; with
// `use_standby`, the Accept on a standby opened before the clock starts.
asio::awaitable<double> relay_session(Context& c, Channel& listening, std::size_t i, bool e2e,
                                      bool use_standby) {
  std::optional<Channel> standby;
  if (use_standby) {
    if (auto ec =
            co_await open_hop(c.hop, source_address(i), c.listener, strelay::Standby{}, standby))
      die("standby: " + ec.message());
  }
  const auto t0 = Clock::now();
  Clock::time_point t1;
  const auto source = source_address(i);
  std::optional<tcp::socket> a, b;
  std::optional<strelay::Stream> sa, sb;
  std::error_code ea, eb;
  auto connector = [&]() -> asio::awaitable<void> {
    ea = co_await connector_side(c.hop, source, c.connector, c.listener.public_key(), a);
    if (ea) co_return;
    std::array<std::uint8_t, 1> byte{42};
    if (!e2e) {
      co_await asio::async_write(*a, asio::buffer(byte), asio::use_awaitable);
      co_return;
    }
    std::optional<Channel> channel;
    ea = co_await strelay::connect_stream_handshake(*a, c.connector, c.listener.public_key(),
                                                    deadline_in(std::chrono::seconds(20)), channel);
    if (ea) co_return;
    sa.emplace(std::move(*channel));
    ea = co_await sa->write(byte);
  };
  auto acceptor = [&]() -> asio::awaitable<void> {
    PublicKey from;
    // An if, not ?: (GCC 12 miscompiles co_await in both arms of a conditional expression).
    if (standby) {
      eb = co_await standby_acceptor_side(listening, *standby, b, from);
    } else {
      eb = co_await acceptor_side(c.hop, source, c.listener, listening, b, from);
    }
    if (eb) co_return;
    std::array<std::uint8_t, 1> got{};
    if (!e2e) {
      co_await asio::async_read(*b, asio::buffer(got), asio::use_awaitable);
      t1 = Clock::now();
      co_return;
    }
    std::optional<Channel> channel;
    eb = co_await strelay::accept_stream_handshake(
        *b, c.listener, from, [](const PublicKey&) { return true; },
        deadline_in(std::chrono::seconds(20)), channel);
    if (eb) co_return;
    sb.emplace(std::move(*channel));
    const auto r = co_await sb->read_some(got);
    if (r.error || r.bytes != 1) eb = r.error ? r.error : strelay::errc::protocol_error;
    t1 = Clock::now();
  };
  co_await (connector() && acceptor());
  if (ea || eb) die("relay session: " + (ea ? ea : eb).message());
  if (sa) sa->abort();
  if (sb) sb->abort();
  co_return seconds_between(t0, t1);
}

// The connector of the early kinds: its end-to-end msg1 rides in Connect; after
// Connected{early_e2e} the pipe starts with the listener's msg2.
asio::awaitable<std::error_code> early_connector(Context& c, const asio::ip::address& source,
                                                 std::optional<Channel>& out) {
  strelay::InitiatorHandshake handshake(c.connector, c.listener.public_key(),
                                        strelay::HandshakeLayer::end_to_end);
  const strelay::Connect connect{c.listener.public_key(), strelay::early_msg1(handshake)};
  std::optional<Channel> hop;
  if (auto ec = co_await open_hop(c.hop, source, c.connector, connect, hop)) co_return ec;
  PublicKey peer;
  bool early = false;
  const auto deadline = deadline_in(std::chrono::seconds(20));
  if (auto ec = co_await strelay::await_pairing(*hop, deadline, peer, &early)) co_return ec;
  if (!early) co_return strelay::errc::protocol_error;  // the listener always answers here
  auto socket = hop->release_socket();
  co_return co_await strelay::finish_early_connect(socket, handshake, deadline, out);
}

// The listener of the early kinds: msg2 for the IncomingConnection's msg1, Accept{from, msg1}
// (on the standby, else a new connection) with msg2 right after it, then msg3 from the pipe.
asio::awaitable<std::error_code> early_acceptor(Context& c, const asio::ip::address& source,
                                                Channel& listening, std::optional<Channel>& standby,
                                                std::optional<Channel>& out) {
  const auto incoming = co_await next_relay_message(listening);
  const auto* inc = incoming ? std::get_if<strelay::IncomingConnection>(&*incoming) : nullptr;
  if (inc == nullptr || !inc->e2e_msg1) co_return strelay::errc::protocol_error;
  strelay::ResponderHandshake handshake(c.listener, strelay::HandshakeLayer::end_to_end);
  if (!strelay::take_early_msg1(handshake, *inc->e2e_msg1))
    co_return strelay::errc::handshake_failed;
  const strelay::Accept accept{inc->from, inc->e2e_msg1};
  const auto deadline = deadline_in(std::chrono::seconds(20));
  std::optional<Channel> hop;
  if (standby) {
    hop = std::move(standby);
    const auto bytes = strelay::encode(strelay::NodeMessage{accept});
    if (auto ec = co_await hop->send(strelay::FrameKind::control, bytes, deadline)) co_return ec;
  } else if (auto ec = co_await open_hop(c.hop, source, c.listener, accept, hop)) {
    co_return ec;
  }
  const auto msg2 = strelay::early_msg2(handshake);  // after the Accept: overlaps the pairing
  if (auto ec = co_await strelay::send_early_msg2(hop->socket(), msg2, deadline)) co_return ec;
  PublicKey peer;
  if (auto ec = co_await strelay::await_pairing(*hop, deadline, peer)) co_return ec;
  auto socket = hop->release_socket();
  co_return co_await strelay::finish_early_accept(
      socket, handshake, inc->from, [](const PublicKey&) { return true; }, deadline, out);
}

// One session of an early kind: as relay_e2e (or relay_standby_e2e), with the end-to-end msg1
// in Connect (docs/protocol.md 4.4, "The end-to-end msg1 with connect").
asio::awaitable<double> early_session(Context& c, Channel& listening, std::size_t i,
                                      bool use_standby) {
  const auto source = source_address(i);
  std::optional<Channel> standby;
  if (use_standby) {
    if (auto ec = co_await open_hop(c.hop, source, c.listener, strelay::Standby{}, standby))
      die("standby: " + ec.message());
  }
  const auto t0 = Clock::now();
  Clock::time_point t1;
  std::optional<Channel> ca, cb;
  std::optional<strelay::Stream> sa, sb;
  std::error_code ea, eb;
  auto connector = [&]() -> asio::awaitable<void> {
    ea = co_await early_connector(c, source, ca);
    if (ea) co_return;
    sa.emplace(std::move(*ca));
    std::array<std::uint8_t, 1> byte{42};
    ea = co_await sa->write(byte);
  };
  auto acceptor = [&]() -> asio::awaitable<void> {
    eb = co_await early_acceptor(c, source, listening, standby, cb);
    if (eb) co_return;
    sb.emplace(std::move(*cb));
    std::array<std::uint8_t, 1> got{};
    const auto r = co_await sb->read_some(got);
    if (r.error || r.bytes != 1) eb = r.error ? r.error : strelay::errc::protocol_error;
    t1 = Clock::now();
  };
  co_await (connector() && acceptor());
  if (ea || eb) die("early session: " + (ea ? ea : eb).message());
  sa->abort();
  sb->abort();
  co_return seconds_between(t0, t1);
}

struct RoundResult {
  std::vector<double> latencies;  // seconds
  double relay_cpu = 0;
};

asio::awaitable<RoundResult> run_kind(Context& c, tcp::acceptor& sink, const std::string& kind,
                                      std::size_t sessions) {
  RoundResult r;
  std::optional<Channel> listening;
  const bool early = kind.find("early") != std::string::npos;
  if (early) {  // a listener that takes connectors' msg1
    if (auto ec = co_await open_hop(c.hop, source_address(0), c.listener, strelay::Listen{true},
                                    listening))
      die("listen: " + ec.message());
    const auto reply = co_await next_relay_message(*listening);
    if (!reply || !std::holds_alternative<strelay::ListenOk>(*reply)) die("listen: no ListenOk");
  } else if (kind.rfind("relay", 0) == 0) {
    if (auto ec = co_await open_listener(c.hop, source_address(0), c.listener, listening)) {
      die("listen: " + ec.message());
    }
  }
  for (std::size_t i = 0; i < sessions; ++i) {
    if (kind == "tcp") r.latencies.push_back(co_await plain_session(sink, c.sink, i));
    if (kind == "forwarder") r.latencies.push_back(co_await plain_session(sink, c.forwarder, i));
    if (listening && early) {
      r.latencies.push_back(
          co_await early_session(c, *listening, i, kind.find("standby") != std::string::npos));
    } else if (listening) {
      const bool e2e = kind.ends_with("_e2e");
      const bool standby = kind.starts_with("relay_standby");
      r.latencies.push_back(co_await relay_session(c, *listening, i, e2e, standby));
    }
  }
  if (listening) listening->close();
  co_return r;
}

constexpr std::string_view reference_prefix = "reference_";

// The kinds to run, in order: --kinds (default all, less --standby 0 and --early 0), then,
// with a reference relay, each relay kind again against it.
std::vector<std::string> chosen_kinds(const Flags& flags, bool reference) {
  const bool standby = flags.count("standby", 1) != 0;
  const bool early = flags.count("early", 1) != 0;
  const auto wanted = flags.str("kinds", "");
  std::vector<std::string> kinds;
  for (const auto& kind : wanted.empty() ? all_kinds : split(wanted)) {
    if (std::find(all_kinds.begin(), all_kinds.end(), kind) == all_kinds.end())
      usage_error("unknown kind " + kind);
    if (!standby && kind.starts_with("relay_standby")) continue;
    if (!early && kind.find("early") != std::string::npos) continue;
    kinds.push_back(kind);
  }
  if (reference) {
    const auto ours = kinds;
    for (const auto& kind : ours)
      if (kind.starts_with("relay")) kinds.push_back(std::string(reference_prefix) + kind);
  }
  return kinds;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags(argc, argv,
                    {"bin", "early", "kinds", "reference-bin", "round-limit", "rounds", "sessions",
                     "standby", "threads"});
  strelay::init_crypto();
  ::signal(SIGPIPE, SIG_IGN);
  const auto sessions = static_cast<std::size_t>(flags.count("sessions", 1000));
  const int rounds = static_cast<int>(flags.count("rounds", 5));
  const auto limit = std::chrono::seconds(flags.count("round-limit", 120));
  const fs::path bin = flags.str("bin", "build/bin");
  const fs::path reference_bin = flags.str("reference-bin", "");
  const auto dir = scratch_dir("setup");
  const auto kinds = chosen_kinds(flags, !reference_bin.empty());
  auto has = [&](const std::string& kind) {
    return std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
  };

  std::vector<std::string> relay_flags{"--connect-rate-per-source", "1000000",
                                       "--connect-burst-per-source", "1000000"};
  if (const auto threads = flags.count("threads", 0); threads > 0) {
    relay_flags.insert(relay_flags.end(), {"--threads", std::to_string(threads)});
  }
  auto relay = start_relay(bin, dir, relay_flags);
  std::optional<RelayUnderTest> reference;
  if (!reference_bin.empty())
    reference.emplace(start_relay(reference_bin, dir / "reference", relay_flags));
  asio::io_context ioc(1);
  Context c;
  tcp::acceptor sink(ioc, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  sink.listen(1024);
  c.sink = sink.local_endpoint();
  const int forwarder_port = free_port();
  Child forwarder = start_forwarder("splice", bin, forwarder_port, c.sink.port(), dir);
  c.forwarder =
      tcp::endpoint(asio::ip::address_v4::loopback(), static_cast<unsigned short>(forwarder_port));

  std::map<std::string, std::vector<RoundResult>> results;
  for (int round = 0; round < rounds; ++round) {
    for (std::size_t k = 0; k < kinds.size(); ++k) {
      const auto& kind = kinds[(k + static_cast<std::size_t>(round)) % kinds.size()];
      const bool against_reference = kind.starts_with(reference_prefix);
      auto& target = against_reference ? *reference : relay;
      c.hop = {target.endpoint, target.key};
      const auto base = against_reference ? kind.substr(reference_prefix.size()) : kind;
      const double cpu0 = target.process.cpu_seconds();
      auto r = run_until_done(ioc, run_kind(c, sink, base, sessions), limit);
      r.relay_cpu = target.process.cpu_seconds() - cpu0;
      std::fprintf(
          stderr, "setup round %d %-33s p50 %.3f ms p99 %.3f ms relay cpu/session %.3f ms\n",
          round + 1, kind.c_str(), 1e3 * median(r.latencies), 1e3 * quantile(r.latencies, 0.99),
          1e3 * r.relay_cpu / static_cast<double>(sessions));
      results[kind].push_back(std::move(r));
    }
  }

  std::vector<Figure> figures;
  for (const auto& kind : kinds) {
    for (const auto& [q, name] :
         std::vector<std::pair<double, std::string>>{{0.5, "p50"}, {0.9, "p90"}, {0.99, "p99"}}) {
      Figure f("setup." + kind + "." + name, kind + ": set-up " + name, "ms");
      for (const auto& r : results[kind]) f.values.push_back(1e3 * quantile(r.latencies, q));
      if (kind == "relay" && name == "p50") f.target = 1.0;
      if (kind == "relay_standby" && name == "p50") f.target = 0.8;  // issue 17.2
      figures.push_back(f);
    }
    if (kind.starts_with("relay") || kind.starts_with(reference_prefix)) {
      Figure cpu("setup." + kind + ".relay_cpu_per_session", kind + ": relay CPU per session",
                 "ms");
      for (const auto& r : results[kind])
        cpu.values.push_back(1e3 * r.relay_cpu / static_cast<double>(sessions));
      if (kind == "relay") cpu.target = 0.35;
      if (kind == "relay_standby") cpu.target = 0.45;  // issue 17.2
      figures.push_back(cpu);
    }
  }
  // A figure per round from two kinds' rounds, when both ran: p50 differences in ms, ratios
  // of p50s or of relay CPU.
  enum class Measure { p50_difference, p50_ratio, cpu_ratio };
  auto compare = [&](const std::string& name, const std::string& label, const std::string& a,
                     const std::string& b, Measure measure, std::optional<double> target) {
    if (!has(a) || !has(b)) return;
    Figure f(name, label, measure == Measure::p50_difference ? "ms" : "ratio");
    for (std::size_t r = 0; r < static_cast<std::size_t>(rounds); ++r) {
      const auto& x = results[a][r];
      const auto& y = results[b][r];
      if (measure == Measure::p50_difference)
        f.values.push_back(1e3 * (median(x.latencies) - median(y.latencies)));
      if (measure == Measure::p50_ratio)
        f.values.push_back(median(x.latencies) / median(y.latencies));
      if (measure == Measure::cpu_ratio) f.values.push_back(x.relay_cpu / y.relay_cpu);
    }
    f.target = target;
    figures.push_back(f);
  };
  using M = Measure;
  compare("setup.e2e_added.p50", "end-to-end handshake adds (p50 relay_e2e - p50 relay)",
          "relay_e2e", "relay", M::p50_difference, 0.5);
  compare("setup.standby_e2e_added.p50",
          "end-to-end handshake adds over a standby (p50 relay_standby_e2e - p50 relay_standby)",
          "relay_standby_e2e", "relay_standby", M::p50_difference, 0.4);  // issue 17.2
  compare("setup.standby_vs_relay.p50", "set-up p50 over a standby / over a new Accept connection",
          "relay_standby", "relay", M::p50_ratio, std::nullopt);
  compare("setup.early_e2e_added.p50",
          "end-to-end handshake adds, msg1 with Connect (p50 relay_early_e2e - p50 relay)",
          "relay_early_e2e", "relay", M::p50_difference, 0.4);  // issue 17.2
  compare("setup.standby_early_e2e_added.p50",
          "end-to-end handshake adds over a standby, msg1 with Connect (p50 "
          "relay_standby_early_e2e - p50 relay_standby)",
          "relay_standby_early_e2e", "relay_standby", M::p50_difference, 0.4);  // issue 17.2
  compare("setup.relay_vs_tcp.p50", "relay / plain TCP set-up p50", "relay", "tcp", M::p50_ratio,
          std::nullopt);
  compare("setup.relay_vs_forwarder.p50", "relay / forwarder set-up p50", "relay", "forwarder",
          M::p50_ratio, std::nullopt);
  for (const auto& kind : kinds) {  // this relay against the reference, round by round
    if (kind.starts_with(reference_prefix) || !kind.starts_with("relay")) continue;
    compare("setup." + kind + ".relay_cpu_vs_reference",
            kind + ": relay CPU per session / the reference relay's", kind,
            std::string(reference_prefix) + kind, M::cpu_ratio, std::nullopt);
  }
  json params{{"sessions_per_round", sessions}, {"rounds", rounds}, {"kinds", kinds}};
  std::printf("%s\n", report("setup", params, figures).dump(1).c_str());
  fs::remove_all(dir);
  return 0;
}
