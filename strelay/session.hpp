// One relay connection's life: admission, handshake, first request, then its role until it
// closes or becomes one end of a tunnel.
//
//   accepted ─ handshake (absolute deadline) ─┬─ failed: closed without a word
//                                             └─ first request (msg3 payload)
//      Listen  → listener: reads RejectConnection, ping/pong; the writer pushes
//                IncomingConnection and keepalive pings; ends on close, dead peer or replace
//      Connect → pending connector: waits for one outcome; Connected → tunnel
//      Accept  → Connected → tunnel, or Refused{no_pending}
//
// Ownership: a Session, its socket and channel, its queue and its timers belong to its worker
// thread. Other threads reach it only through post(), which appends to inbox_ (guarded by
// inbox_mutex_) and wakes the writer on that worker. The writer
// coroutine is the only one that sends; the reader coroutine is the only one that receives.
// A pending connector's reader first waits for readability without reading, so pairing can
// stop it without a byte of the tunnel being taken as a frame.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <variant>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/channel.hpp"
#include "common/log.hpp"
#include "common/messages.hpp"
#include "common/transport.hpp"
#include "strelay/limits.hpp"
#include "strelay/metrics.hpp"
#include "strelay/relay_state.hpp"

namespace strelay {

class Server;
class Rendezvous;

// What the connection holds while it is open; handed to the tunnel after pairing, so the
// connection stays counted (and its admission slot held) for as long as the socket is open.
struct ConnectionHold {
  Admission::Admitted admitted;
  GaugeHold connection;
  // The handshake's absolute deadline when it started before the Session (the carrier's front
  // door: peeking, a PROXY header, a WebSocket upgrade); nullopt: from the Session's start.
  std::optional<TimePoint> deadline{};
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  // A decision for this session from the pairing table, or from shutdown.
  using Outbound = std::variant<RelayMessage, CloseReason, std::shared_ptr<Rendezvous>>;

  Session(Server& server, boost::asio::ip::tcp::socket socket, ConnectionHold hold);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Spawns the session on its socket's worker.
  static void start(std::shared_ptr<Session> session);
  // Thread-safe: queues `item` on the session's worker.
  void post(Outbound item);
  ConnId id() const { return id_; }

 private:
  enum class Role { none, listener, connector, acceptor };

  boost::asio::awaitable<void> run();
  boost::asio::awaitable<bool> handshake();
  boost::asio::awaitable<void> reader();
  boost::asio::awaitable<void> writer();
  boost::asio::awaitable<bool> handle_frame(const Message& message);
  boost::asio::awaitable<bool> send_message(const RelayMessage& message);
  boost::asio::awaitable<void> send_close(CloseReason reason);
  boost::asio::awaitable<void> join_tunnel(std::shared_ptr<Rendezvous> rendezvous);
  boost::asio::awaitable<void> stop_reader();
  void take_inbox();  // moves what post() delivered into queue_
  void wake() { wake_.cancel(); }
  Deadline write_deadline() const;
  LogTags tags() const;

  Server& server_;
  const ConnId id_;
  boost::asio::ip::tcp::socket socket_;  // until the handshake gives it to channel_
  std::optional<Channel> channel_;
  std::optional<ConnectionHold> hold_;
  Role role_ = Role::none;
  std::optional<PublicKey> peer_;
  std::vector<std::uint8_t> first_request_;

  // post() side: any thread.
  std::mutex inbox_mutex_;
  // Vectors, not deques: a default-constructed std::deque allocates a 512-byte block, and
  // every idle listener would carry two of them (docs/performance.md, idle memory).
  std::vector<Outbound> inbox_;

  // Writer side.
  std::vector<Outbound> queue_;  // a few items at most; taken from the front
  RelayTimer wake_;  // the writer sleeps on it (relay clock: keepalive); cancel() wakes it
  std::optional<Keepalive> keepalive_;
  std::vector<PingToken> pongs_due_;
  bool closing_ = false;

  // Reader side.
  bool reader_running_ = false;
  bool stopping_reader_ = false;  // set by the writer before it cancels the reader's wait
  bool reader_failed_ = false;    // the reader ended because the peer closed or misbehaved
  CloseReason reader_reason_ = CloseReason::normal;
  boost::asio::steady_timer reader_done_;  // cancelled when the reader ends
};

}  // namespace strelay
