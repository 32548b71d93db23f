// One relay connection's life: admission, handshake, first request, then its role until it
// closes or becomes one end of a tunnel.
//
//   accepted ─ handshake (absolute deadline) ─┬─ failed: closed without a word
//                                             └─ first request (msg3 payload)
//      Listen  → listener: reads RejectConnection, ping/pong; the writer pushes
//                IncomingConnection and keepalive pings; ends on close, dead peer or replace
//      Connect → pending connector: waits for one outcome; Connected → tunnel
//      Accept  → Connected → tunnel, or Refused{no_pending}
//      Standby → parked (handshake done) until its one Accept, then as Accept; closed with its
//                listen, or by a newer standby
//
// A session knows the relay only as a SessionHost (join, then submit through its
// Registration) and is given everything else in its SessionContext; it never sees the Server.
// run() computes one outcome, and counts and logs it once (closes_total): the close it sent,
// the way its peer ended, or nothing when its socket went to a tunnel (the tunnel counts it).
//
// Ownership: a Session, its socket and channel, its queue and its timers belong to its worker
// thread. Other threads reach it only through post(), which appends to inbox_ (guarded by
// inbox_mutex_) and wakes the writer on that worker. The writer
// coroutine is the only one that sends; the reader coroutine is the only one that receives.
// A pending connector's reader first waits for readability without reading, so pairing can
// stop it without a byte of the tunnel being taken as a frame.
//
// Idle shape (docs/performance.md, idle memory round 2): neither side keeps a coroutine while
// it has nothing to do. The writer parks on wake_ with a plain callback, which spawns it again
// (drive()) when post(), the reader or the keepalive's deadline wakes it; the reader parks on
// a readability wait with a plain callback, which spawns it again when bytes arrive. An idle
// listener or standby is then its Session, its channel and these two pending waits: no
// coroutine frames. The reader counts as running while its wait is parked (stop_reader()
// cancels that wait as it would cancel a coroutine's).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <variant>
#include <vector>

#include "common/channel.hpp"
#include "common/keepalive.hpp"
#include "common/log.hpp"
#include "common/messages.hpp"
#include "common/transport.hpp"
#include "strelay/admission_client.hpp"
#include "strelay/clock.hpp"
#include "strelay/relay.hpp"
#include "strelay/settings.hpp"

namespace strelay {

// What a session is given besides the relay, fixed for its life.
struct SessionContext {
  std::shared_ptr<const ServerSettings> settings;  // the snapshot in force when it was accepted
  const Identity& identity;
  Clock& clock;  // the relay's (strelay/clock.hpp): every deadline the session keeps
  Metrics& metrics;
  Logger& log;
  AdmissionHook* hook = nullptr;  // --admission-url; asked before a Listen or Connect
};

class Session final : public RelayMember, public std::enable_shared_from_this<Session> {
 public:
  // `client` is the address the connection came from (for logs); `id` is the relay's
  // connection id for it. `host` must outlive the session.
  Session(SessionContext context, SessionHost& host, ConnId id, boost::asio::ip::tcp::socket socket,
          boost::asio::ip::tcp::endpoint client, ConnectionHold hold);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Spawns the session on its socket's worker.
  static void start(std::shared_ptr<Session> session);
  // Thread-safe: queues `item` on the session's worker.
  void post(Outbound item) override;
  // The source its admission counted (nullptr once the socket went to a tunnel).
  const Source* source() const override { return hold_ ? &hold_->admitted.source() : nullptr; }
  ConnId id() const { return id_; }

 private:
  enum class Role { none, listener, connector, acceptor, standby };
  // Why the reader stopped for good, and whether the node should be told (a close frame).
  struct ReaderEnd {
    CloseReason reason = CloseReason::normal;
    bool tell = false;
    std::error_code error;
  };

  // What only the handshake needs: freed once it is over, so a long-lived session does not
  // carry an empty socket, a watchdog timer and the first request's bytes.
  struct Opening {
    Opening(boost::asio::ip::tcp::socket socket, Clock& clock)
        : socket(std::move(socket)), watchdog(this->socket.get_executor(), clock) {}
    boost::asio::ip::tcp::socket socket;  // until the handshake gives it to channel_
    RelayTimer watchdog;                  // the absolute handshake deadline; evict() cancels it
    std::vector<std::uint8_t> first_request;
  };

  // Runs serve() (first) or drive() (resumed from a parked writer), and ends the session
  // unless it parked: an exception is logged and counted as internal, and the relay forgets
  // this connection however it ended.
  boost::asio::awaitable<void> run(bool first);
  // The handshake and the first request, then drive(). True: parked.
  boost::asio::awaitable<bool> serve();
  boost::asio::awaitable<bool> handshake();
  // The admission hook's answer for the first request; false: refused and closed.
  boost::asio::awaitable<bool> admitted_by_hook();
  boost::asio::awaitable<void> reader(bool woken);
  // Parks the reader on a callback until the socket is readable (see "Idle shape").
  void wait_readable();
  void reader_stopped();  // the reader is over for good: the writer is woken to act on it
  // The writer: true when it parked (park() armed), false when the session is over.
  boost::asio::awaitable<bool> drive();
  void park();  // the writer waits on wake_ with a callback that resumes drive()
  boost::asio::awaitable<bool> finish();  // the writer's end: the reader stopped, socket closed
  boost::asio::awaitable<bool> handle_frame(const Message& message);
  boost::asio::awaitable<std::error_code> send_message(const RelayMessage& message);
  boost::asio::awaitable<bool> send_keepalive();  // false: the session has ended
  boost::asio::awaitable<void> join_tunnel(std::shared_ptr<Rendezvous> rendezvous);
  boost::asio::awaitable<void> stop_reader();
  // The session's end: its outcome is counted and logged, then the node is told (`tell`) and
  // the channel closed.
  boost::asio::awaitable<void> close(CloseReason reason, bool tell, std::error_code error = {});
  void end(CloseReason reason, std::error_code error);  // counts and logs the outcome, once
  CloseReason send_failure() const {
    return dropped_ ? CloseReason::protocol_error : CloseReason::aborted;
  }
  void take_inbox();  // moves what post() delivered into queue_
  // Fair share chose this connection (limits.hpp): a handshake is cut as its deadline would
  // cut it; an authenticated connection is told Close{overloaded}. On the session's worker.
  void evict();
  // Every frame after the first request takes a token; false when over the rate (issue 14.6).
  bool take_control_token();
  void wake() { wake_.cancel(); }
  Deadline write_deadline() const;
  LogTags tags() const;

  const SessionContext context_;
  SessionHost& host_;
  const ConnId id_;
  const boost::asio::ip::tcp::endpoint client_;
  std::unique_ptr<Opening> opening_;  // until the handshake is over
  std::optional<Channel> channel_;
  std::optional<ConnectionHold> hold_;
  Role role_ = Role::none;
  std::optional<PublicKey> peer_;
  bool evicted_ = false;
  std::optional<TokenBucket> control_bucket_;  // from the first frame after the first request
  // The one outcome counted for this session (closes_total); none while it runs, and none
  // when its socket went to a tunnel (the tunnel counts its own close).
  std::optional<CloseReason> outcome_;
  // Joined before the first request; reset when run() ends, however it ends, so the relay
  // forgets this connection on every path.
  Registration registration_;

  // post() side: any thread.
  std::mutex inbox_mutex_;
  // Vectors, not deques: a default-constructed std::deque allocates a 512-byte block, and
  // every idle listener would carry two of them (docs/performance.md, idle memory).
  std::vector<Outbound> inbox_;

  // Writer side.
  std::vector<Outbound> queue_;  // a few items at most; taken from the front
  // The writer parks on it (relay clock: keepalive); cancel() wakes it. stop_reader() waits on
  // it too (the writer is then running, not parked): the reader's end wakes it.
  RelayTimer wake_;
  // Pongs owed to the node, and (a listener's) the relay's own pings; fed by the reader, asked
  // by the writer (same worker). Connectors and acceptors only answer.
  Keepalive keepalive_;
  // The reader dropped the socket without a word (a node that pings without reading): the
  // writer sends nothing more.
  bool dropped_ = false;

  // Reader side.
  bool reader_running_ = false;          // a reader coroutine or its parked wait exists
  bool stopping_reader_ = false;         // set by the writer before it cancels the reader's wait
  std::optional<ReaderEnd> reader_end_;  // set when the peer closed, vanished or misbehaved
};

}  // namespace strelay
