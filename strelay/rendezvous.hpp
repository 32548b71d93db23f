// Where the two ends of a pairing meet to become one tunnel.
//
// After Paired, the connector's session and the acceptor's session each send Connected on
// their own channel and then arrive here with their raw socket (a descriptor released on
// their own worker) and their ConnectionHold. The second to arrive hands both to the relay's
// start-tunnel callback, on its own worker. If either end fails before it arrives (its node
// closed, or the Connected could not be sent), it abandons the rendezvous, and the other end's
// socket is closed: its node then sees the pipe close, which its end-to-end channel reports.
//
// A rendezvous knows nothing of the relay: it is given the pairing, a log, and what to do
// with the two ends.
//
// Thread-safety: arrive() and abandon() may be called from any worker; mutex_ guards the rest.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "common/log.hpp"
#include "strelay/limits.hpp"
#include "strelay/metrics.hpp"
#include "strelay/relay_state.hpp"

namespace strelay {

// What a connection holds while it is open; handed to the tunnel after pairing, so the
// connection stays counted (and its admission slot held) for as long as the socket is open.
struct ConnectionHold {
  Admission::Admitted admitted;
  GaugeHold connection;
  // The handshake's absolute deadline when it started before the Session (the carrier's front
  // door: peeking, a PROXY header, a WebSocket upgrade); nullopt: from the Session's start.
  std::optional<TimePoint> deadline{};
};

// A connected socket on its way to its tunnel. It arrives live (still the session's Asio
// socket, on that session's worker); the end that must wait for its partner is detach()ed to a
// bare descriptor and its family, which attach() gives to a socket on the tunnel's worker. The
// end that arrives second starts the tunnel on its own worker, so its socket stays as it is:
// no deregister and register again, no FIONBIO, no getsockname (docs/performance.md, issue
// 17.2). A live handle never leaves the call that made it (its socket's io_context may be gone
// by the time another thread destroys it). It closes what it holds unless attach() takes it, so
// no path can leak a descriptor.
class SocketHandle {
 public:
  SocketHandle() = default;
  // Takes `socket` whole (on its own worker).
  explicit SocketHandle(boost::asio::ip::tcp::socket&& socket) : live_(std::move(socket)) {}
  SocketHandle(SocketHandle&& other) noexcept
      : live_(std::move(other.live_)), fd_(std::exchange(other.fd_, -1)), family_(other.family_) {
    other.live_.reset();
  }
  SocketHandle& operator=(SocketHandle&& other) noexcept;
  SocketHandle(const SocketHandle&) = delete;
  SocketHandle& operator=(const SocketHandle&) = delete;
  ~SocketHandle() { reset(); }

  bool valid() const { return fd_ >= 0 || (live_ && live_->is_open()); }
  // The live socket becomes a bare descriptor, free to cross to another worker.
  void detach();
  // A socket on `executor` (the worker that uses it from now on) that owns the descriptor: the
  // live socket itself when it is already on that worker.
  boost::asio::ip::tcp::socket attach(const boost::asio::any_io_executor& executor);
  void reset();

 private:
  std::optional<boost::asio::ip::tcp::socket> live_;
  int fd_ = -1;
  // The socket's own family: IPv4 or IPv6 (a WebSocket bridge's Unix socketpair end, used only
  // for reads, writes, shutdown and splice, is tagged IPv6: Asio needs a protocol to hold it).
  boost::asio::ip::tcp family_ = boost::asio::ip::tcp::v6();
};

// One end of a pairing, released by its session: the rendezvous (then the tunnel) owns it.
struct TunnelEnd {
  ConnId side = 0;
  SocketHandle socket;
  ConnectionHold hold;
};

class Rendezvous : public std::enable_shared_from_this<Rendezvous> {
 public:
  // Called once, by the second end to arrive, on that end's worker (`executor`).
  using StartTunnel =
      std::function<void(const Paired& pairing, TunnelEnd connector, TunnelEnd acceptor,
                         boost::asio::any_io_executor executor)>;

  // `log` must outlive the rendezvous.
  Rendezvous(const Paired& pairing, Logger& log, StartTunnel start)
      : pairing_(pairing), log_(log), start_(std::move(start)) {}
  Rendezvous(const Rendezvous&) = delete;
  Rendezvous& operator=(const Rendezvous&) = delete;
  ~Rendezvous();

  const Paired& pairing() const { return pairing_; }
  // The key the connection `side` is paired with (sent to it in Connected).
  const PublicKey& peer_of(ConnId side) const {
    return side == pairing_.connector ? pairing_.listener_key : pairing_.connector_key;
  }
  // `end.socket` is a connected socket released by its session; the rendezvous owns it from here.
  void arrive(TunnelEnd end, boost::asio::any_io_executor executor);
  void abandon(ConnId side);

 private:
  const Paired pairing_;
  Logger& log_;
  StartTunnel start_;
  std::mutex mutex_;
  std::optional<TunnelEnd> waiting_;
  bool abandoned_ = false;
};

}  // namespace strelay
