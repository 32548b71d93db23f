// Where the two ends of a pairing meet to become one tunnel.
//
// After Paired, the connector's session and the acceptor's session each send Connected on
// their own channel and then arrive here with their raw socket (a descriptor released on
// their own worker) and their ConnectionHold. The second to arrive builds the Tunnel on its
// own worker and runs it. If either end fails before it arrives (its node closed, or the
// Connected could not be sent), it abandons the rendezvous, and the other end's socket is
// closed: its node then sees the pipe close, which its end-to-end channel reports.
//
// Thread-safety: arrive() and abandon() may be called from any worker; mutex_ guards the rest.
#pragma once

#include <memory>
#include <mutex>
#include <optional>

#include <boost/asio/any_io_executor.hpp>

#include "strelay/relay_state.hpp"
#include "strelay/session.hpp"

namespace strelay {

class Server;

class Rendezvous : public std::enable_shared_from_this<Rendezvous> {
 public:
  Rendezvous(Server& server, const Paired& pairing) : server_(server), pairing_(pairing) {}
  Rendezvous(const Rendezvous&) = delete;
  Rendezvous& operator=(const Rendezvous&) = delete;
  ~Rendezvous();

  const Paired& pairing() const { return pairing_; }
  // The key the connection `side` is paired with (sent to it in Connected).
  const PublicKey& peer_of(ConnId side) const {
    return side == pairing_.connector ? pairing_.listener_key : pairing_.connector_key;
  }
  // `fd` is a connected socket released by its session; the rendezvous owns it from here.
  void arrive(ConnId side, int fd, ConnectionHold hold, boost::asio::any_io_executor executor);
  void abandon(ConnId side);

 private:
  struct Arrived {
    ConnId side = 0;
    int fd = -1;
    ConnectionHold hold;
  };
  void start_tunnel(Arrived first, Arrived second, boost::asio::any_io_executor executor);

  Server& server_;
  const Paired pairing_;
  std::mutex mutex_;
  std::optional<Arrived> waiting_;
  bool abandoned_ = false;
};

}  // namespace strelay
