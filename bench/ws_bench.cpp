// The cost of a WebSocket tunnel against a TCP one (issue 15): P tunnels through one strelay
// move BYTES in total from the connector to the acceptor, for each choice of carriers, in the
// same rounds:
//
//   tcp      both nodes on TCP: the relay splices (the reference)
//   ws_tcp   the sender (connector) on WebSocket, the receiver on TCP
//   tcp_ws   the sender on TCP, the receiver (acceptor) on WebSocket
//   ws_ws    both on WebSocket
//
// A WebSocket node is what tests/support/ws_client.cpp makes: Beast's client stream, bridged to
// a socketpair by the relay's own WebSocketBridge (fin_closes), so the node's code above the
// carrier is unchanged. The bench's nodes therefore pay a copy through that socketpair on each
// WebSocket end (in the bench process, not the relay); a browser pays its own framing instead.
//
// Throughput is bytes received / wall time from the first write until every receiver has all
// its bytes (a WebSocket receiver sees no FIN; it gets the relay's Close only after the
// linger). The relay's CPU is utime+stime from /proc/PID/stat around the transfer, per GiB;
// the bench's own (its nodes: the sending and receiving threads and the WebSocket bridges) is
// reported beside it, as it shares the machine's 2 cores with the relay.
//
//   ws_bench --bin DIR [--bytes 1073741824] [--pairs 1,8] [--rounds 5] [--run-limit 120]
//            [--kinds tcp,ws_tcp,tcp_ws,ws_ws] [--frames whole|4k]
//
// --frames: how the bench's WebSocket nodes frame a message: whole (default; one frame per
// message, as browsers and the ws package send) or 4k (Beast's client default, auto_fragment:
// frames of its 4 KiB write buffer).
//
// Prints one JSON document (bench/harness.hpp) on stdout; progress goes to stderr.
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/websocket.hpp>
#include <future>
#include <thread>

#include "bench/harness.hpp"
#include "bench/pairing.hpp"
#include "bench/transfer.hpp"
#include "strelay/clock.hpp"
#include "strelay/websocket.hpp"

using namespace bench;

namespace {

constexpr double gib = 1024.0 * 1024.0 * 1024.0;

struct Kind {
  std::string name;
  bool connector_ws;
  bool acceptor_ws;
};
const std::vector<Kind> all_kinds{
    {"tcp", false, false}, {"ws_tcp", true, false}, {"tcp_ws", false, true}, {"ws_ws", true, true}};

struct RunResult : Transferred {
  double cpu = 0;       // the relay's
  double node_cpu = 0;  // this process's: both nodes' ends, their bridges included
};

// The nodes' WebSocket bridges time their write stalls on real time; it outlives them all.
strelay::Clock& node_clock() {
  static strelay::Clock clock;
  return clock;
}

bool whole_frames = true;  // --frames whole|4k

// The carrier under a node's hop: TCP from `source`, or a WebSocket at /strelay over it.
asio::awaitable<std::error_code> open_carrier(const Hop& hop, const asio::ip::address& source,
                                              bool websocket, std::optional<tcp::socket>& out) {
  tcp::socket socket(co_await asio::this_coro::executor);
  boost::system::error_code ec;
  socket.open(tcp::v4(), ec);
  if (!ec) socket.bind(tcp::endpoint(source, 0), ec);
  if (!ec) std::tie(ec) = co_await socket.async_connect(hop.relay, strelay::await_tuple);
  if (ec) co_return std::error_code(ec.value(), std::system_category());
  if (!websocket) {
    out.emplace(std::move(socket));
    co_return std::error_code{};
  }
  strelay::WebSocketBridge::Stream ws(std::move(socket));
  // One frame per message, as browsers and the ws package send (Beast's client default
  // splits each message into frames of write_buffer_bytes, 4 KiB).
  ws.auto_fragment(!whole_frames);
  const auto host = hop.relay.address().to_string() + ":" + std::to_string(hop.relay.port());
  std::tie(ec) = co_await ws.async_handshake(host, "/strelay", strelay::await_tuple);
  if (ec) co_return std::error_code(ec.value(), std::system_category());
  auto [bridge, end] =
      strelay::WebSocketBridge::make(std::move(ws), node_clock(), {.fin_closes = true});
  bridge->start();
  out.emplace(std::move(end));
  co_return std::error_code{};
}

// One side of a tunnel (Connect{to} or Accept{to}) on the chosen carrier: the raw socket.
asio::awaitable<std::error_code> tunnel_side(const Hop& hop, const asio::ip::address& source,
                                             bool websocket, const Identity& self,
                                             const strelay::NodeMessage& request,
                                             std::optional<tcp::socket>& out) {
  std::optional<tcp::socket> carrier;
  if (auto ec = co_await open_carrier(hop, source, websocket, carrier)) co_return ec;
  std::optional<Channel> channel;
  if (auto ec = co_await strelay::connect_handshake(
          *carrier, self, hop.relay_key, strelay::HandshakeLayer::hop, strelay::encode(request),
          deadline_in(std::chrono::seconds(20)), channel)) {
    co_return ec;
  }
  PublicKey peer;
  if (auto ec =
          co_await strelay::await_pairing(*channel, deadline_in(std::chrono::seconds(20)), peer)) {
    co_return ec;
  }
  out.emplace(channel->release_socket());
  co_return std::error_code{};
}

// `pairs` tunnels of one kind, as blocking descriptors (connector sends, acceptor receives).
asio::awaitable<std::vector<Connection>> open_tunnels(const Hop& hop, const Kind& kind, int pairs) {
  using namespace asio::experimental::awaitable_operators;
  const auto listener = Identity::generate();
  const auto connector = Identity::generate();
  std::optional<Channel> listening;
  if (auto ec = co_await open_listener(hop, source_address(0), listener, listening))
    die("listen: " + ec.message());
  std::vector<Connection> conns;
  for (int i = 0; i < pairs; ++i) {
    const auto source = source_address(static_cast<std::size_t>(i));
    std::optional<tcp::socket> sender, receiver;
    std::error_code a, b;
    auto connect = [&]() -> asio::awaitable<void> {
      a = co_await tunnel_side(hop, source, kind.connector_ws, connector,
                               strelay::Connect{listener.public_key()}, sender);
    };
    auto accept = [&]() -> asio::awaitable<void> {
      const auto incoming = co_await next_relay_message(*listening);
      if (!incoming || !std::holds_alternative<strelay::IncomingConnection>(*incoming)) {
        b = strelay::errc::protocol_error;
        co_return;
      }
      b = co_await tunnel_side(hop, source, kind.acceptor_ws, listener,
                               strelay::Accept{connector.public_key()}, receiver);
    };
    co_await (connect() && accept());
    if (a || b) die("tunnel (" + kind.name + "): " + (a ? a : b).message());
    conns.push_back({take_blocking_fd(*sender), take_blocking_fd(*receiver)});
  }
  listening->close();
  co_return conns;
}

std::vector<Kind> chosen_kinds(const std::string& text) {
  std::vector<Kind> out;
  for (const auto& name : split(text)) {
    const auto it = std::find_if(all_kinds.begin(), all_kinds.end(),
                                 [&](const Kind& k) { return k.name == name; });
    if (it == all_kinds.end())
      usage_error("unknown kind " + name + " (tcp, ws_tcp, tcp_ws, ws_ws)");
    out.push_back(*it);
  }
  return out;
}

// results[pairs][kind] = per-round results
using Results = std::map<int, std::map<std::string, std::vector<RunResult>>>;

std::vector<Figure> figures_of(Results& results, const std::vector<int>& pair_counts,
                               const std::vector<Kind>& kinds, int rounds) {
  std::vector<Figure> figures;
  for (int pairs : pair_counts) {
    const std::string p = "p" + std::to_string(pairs);
    const std::string of = ", " + std::to_string(pairs) + " tunnel(s)";
    for (const auto& kind : kinds) {
      Figure tput{"ws." + p + "." + kind.name + ".gib_per_s", kind.name + of + ": throughput",
                  "GiB/s"};
      Figure cpu{"ws." + p + "." + kind.name + ".cpu_s_per_gib", kind.name + of + ": relay CPU",
                 "s/GiB"};
      Figure nodes{"ws." + p + "." + kind.name + ".node_cpu_s_per_gib",
                   kind.name + of + ": the bench's nodes' CPU", "s/GiB"};
      for (const auto& res : results[pairs][kind.name]) {
        tput.values.push_back(res.bytes / gib / res.seconds);
        cpu.values.push_back(res.cpu / (res.bytes / gib));
        nodes.values.push_back(res.node_cpu / (res.bytes / gib));
      }
      figures.push_back(tput);
      figures.push_back(cpu);
      figures.push_back(nodes);
    }
    if (results[pairs].count("tcp") == 0) continue;
    for (const auto& kind : kinds) {
      if (kind.name == "tcp") continue;
      Figure tput{"ws." + p + "." + kind.name + "_vs_tcp.throughput",
                  kind.name + " / tcp throughput" + of, "ratio"};
      Figure cpu{"ws." + p + "." + kind.name + "_vs_tcp.cpu",
                 kind.name + " / tcp relay CPU per GiB" + of, "ratio"};
      for (int r = 0; r < rounds; ++r) {
        const auto& a = results[pairs][kind.name][static_cast<std::size_t>(r)];
        const auto& b = results[pairs]["tcp"][static_cast<std::size_t>(r)];
        tput.values.push_back((a.bytes / a.seconds) / (b.bytes / b.seconds));
        cpu.values.push_back((a.cpu / a.bytes) / (b.cpu / b.bytes));
      }
      figures.push_back(tput);
      figures.push_back(cpu);
    }
  }
  return figures;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags(argc, argv,
                    {"bin", "bytes", "frames", "kinds", "pairs", "rounds", "run-limit", "tcp"});
  strelay::init_crypto();
  ::signal(SIGPIPE, SIG_IGN);
  const auto bytes = static_cast<std::uint64_t>(flags.num("bytes", gib));
  std::vector<int> pair_counts;
  for (const auto& item : split(flags.str("pairs", "1,8"))) pair_counts.push_back(std::stoi(item));
  const int rounds = static_cast<int>(flags.count("rounds", 5));
  const double limit = flags.num("run-limit", 120);
  const auto frames = flags.str("frames", "whole");
  if (frames != "whole" && frames != "4k") die("--frames is whole or 4k");
  whole_frames = frames == "whole";
  const auto kinds = chosen_kinds(flags.str("kinds", "tcp,ws_tcp,tcp_ws,ws_ws"));
  const auto dir = scratch_dir("ws");
  auto relay = start_relay(flags.str("bin", "build/bin"), dir);
  const Hop hop{relay.endpoint, relay.key};

  // The nodes' side runs on one thread for the whole bench: the WebSocket ends' bridges pump
  // during the transfers, which the blocking threads of transfer() drive.
  asio::io_context ioc;
  auto work = asio::make_work_guard(ioc);
  std::thread io_thread([&ioc] { ioc.run(); });

  Results results;
  int failures = 0;
  for (int r = 0; r < rounds; ++r) {
    for (int pairs : pair_counts) {
      for (std::size_t k = 0; k < kinds.size(); ++k) {
        // Rotate the order per round, so no kind always runs right after the same neighbour.
        const auto& kind = kinds[(k + static_cast<std::size_t>(r)) % kinds.size()];
        auto opened = asio::co_spawn(ioc, open_tunnels(hop, kind, pairs), asio::use_future);
        if (opened.wait_for(std::chrono::seconds(120)) != std::future_status::ready)
          die("opening the tunnels did not finish within 120 s");
        const auto conns = opened.get();
        const double cpu0 = proc_cpu_seconds(relay.process.pid());
        const double node_cpu0 = proc_cpu_seconds(::getpid());
        // Done at the last byte: a WebSocket end's EOF comes only after the bridge's linger.
        RunResult res{transfer(conns, bytes / static_cast<std::uint64_t>(pairs), limit,
                               DoneWhen::at_last_byte)};
        res.cpu = proc_cpu_seconds(relay.process.pid()) - cpu0;
        res.node_cpu = proc_cpu_seconds(::getpid()) - node_cpu0;
        if (!res.ok) ++failures;
        results[pairs][kind.name].push_back(res);
        std::fprintf(stderr,
                     "ws round %d pairs %d %-6s %6.3f GiB/s relay cpu %.3f s/GiB nodes %.3f "
                     "s/GiB%s\n",
                     r + 1, pairs, kind.name.c_str(), res.bytes / gib / res.seconds,
                     res.cpu / (res.bytes / gib), res.node_cpu / (res.bytes / gib),
                     res.ok ? "" : " FAILED");
      }
    }
  }
  work.reset();
  ioc.stop();
  io_thread.join();

  std::vector<std::string> names;
  for (const auto& k : kinds) names.push_back(k.name);
  json params{{"bytes_per_run", bytes}, {"pairs", pair_counts}, {"rounds", rounds},
              {"kinds", names},         {"frames", frames},     {"failed_runs", failures}};
  std::printf(
      "%s\n",
      report("ws", params, figures_of(results, pair_counts, kinds, rounds)).dump(1).c_str());
  fs::remove_all(dir);
  return failures == 0 ? 0 : 3;
}
