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
//   setup_bench --bin DIR [--sessions 1000] [--rounds 5] [--round-limit 120] [--standby 0]
//               [--early 0]
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

}  // namespace

int main(int argc, char** argv) {
  const Flags flags(argc, argv);
  strelay::init_crypto();
  ::signal(SIGPIPE, SIG_IGN);
  const auto sessions = static_cast<std::size_t>(flags.count("sessions", 1000));
  const int rounds = static_cast<int>(flags.count("rounds", 5));
  const auto limit = std::chrono::seconds(flags.count("round-limit", 120));
  const fs::path bin = flags.str("bin", "build/bin");
  const bool standby = flags.count("standby", 1) != 0;
  const auto dir = scratch_dir("setup");
  std::vector<std::string> kinds;
  const bool early = flags.count("early", 1) != 0;
  for (const auto& kind : all_kinds) {
    if (!standby && kind.starts_with("relay_standby")) continue;
    if (!early && kind.find("early") != std::string::npos) continue;
    kinds.push_back(kind);
  }

  auto relay = start_relay(
      bin, dir, {"--connect-rate-per-source", "1000000", "--connect-burst-per-source", "1000000"});
  asio::io_context ioc(1);
  Context c;
  c.hop = {relay.endpoint, relay.key};
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
      const double cpu0 = relay.process.cpu_seconds();
      auto r = run_until_done(ioc, run_kind(c, sink, kind, sessions), limit);
      r.relay_cpu = relay.process.cpu_seconds() - cpu0;
      std::fprintf(
          stderr, "setup round %d %-23s p50 %.3f ms p99 %.3f ms relay cpu/session %.3f ms\n",
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
    if (kind.rfind("relay", 0) == 0) {
      Figure cpu("setup." + kind + ".relay_cpu_per_session", kind + ": relay CPU per session",
                 "ms");
      for (const auto& r : results[kind])
        cpu.values.push_back(1e3 * r.relay_cpu / static_cast<double>(sessions));
      if (kind == "relay") cpu.target = 0.35;
      if (kind == "relay_standby") cpu.target = 0.45;  // issue 17.2
      figures.push_back(cpu);
    }
  }
  Figure added("setup.e2e_added.p50", "end-to-end handshake adds (p50 relay_e2e - p50 relay)",
               "ms");
  Figure standby_added("setup.standby_e2e_added.p50",
                       "end-to-end handshake adds over a standby (p50 relay_standby_e2e - p50 "
                       "relay_standby)",
                       "ms");
  Figure early_added("setup.early_e2e_added.p50",
                     "end-to-end handshake adds, msg1 with Connect (p50 relay_early_e2e - p50 "
                     "relay)",
                     "ms");
  Figure standby_early_added("setup.standby_early_e2e_added.p50",
                             "end-to-end handshake adds over a standby, msg1 with Connect (p50 "
                             "relay_standby_early_e2e - p50 relay_standby)",
                             "ms");
  Figure standby_vs_relay("setup.standby_vs_relay.p50",
                          "set-up p50 over a standby / over a new Accept connection", "ratio");
  Figure vs_tcp("setup.relay_vs_tcp.p50", "relay / plain TCP set-up p50", "ratio");
  Figure vs_fwd("setup.relay_vs_forwarder.p50", "relay / forwarder set-up p50", "ratio");
  for (std::size_t r = 0; r < static_cast<std::size_t>(rounds); ++r) {
    const double relay_p50 = median(results["relay"][r].latencies);
    added.values.push_back(1e3 * (median(results["relay_e2e"][r].latencies) - relay_p50));
    if (standby) {
      const double standby_p50 = median(results["relay_standby"][r].latencies);
      standby_added.values.push_back(
          1e3 * (median(results["relay_standby_e2e"][r].latencies) - standby_p50));
      standby_vs_relay.values.push_back(standby_p50 / relay_p50);
      if (early) {
        standby_early_added.values.push_back(
            1e3 * (median(results["relay_standby_early_e2e"][r].latencies) - standby_p50));
      }
    }
    if (early) {
      early_added.values.push_back(1e3 *
                                   (median(results["relay_early_e2e"][r].latencies) - relay_p50));
    }
    vs_tcp.values.push_back(relay_p50 / median(results["tcp"][r].latencies));
    vs_fwd.values.push_back(relay_p50 / median(results["forwarder"][r].latencies));
  }
  added.target = 0.5;
  figures.push_back(added);
  standby_added.target = 0.4;  // issue 17.2
  if (standby) {
    figures.push_back(standby_added);
    figures.push_back(standby_vs_relay);
  }
  early_added.target = 0.4;          // issue 17.2: the msg1 with Connect
  standby_early_added.target = 0.4;  // issue 17.2
  if (early) figures.push_back(early_added);
  if (early && standby) figures.push_back(standby_early_added);
  figures.push_back(vs_tcp);
  figures.push_back(vs_fwd);
  json params{{"sessions_per_round", sessions}, {"rounds", rounds}, {"kinds", kinds}};
  std::printf("%s\n", report("setup", params, figures).dump(1).c_str());
  fs::remove_all(dir);
  return 0;
}
