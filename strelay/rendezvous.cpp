#include "strelay/rendezvous.hpp"

#include <unistd.h>

namespace strelay {

Rendezvous::~Rendezvous() {
  if (waiting_ && waiting_->fd >= 0) ::close(waiting_->fd);
}

void Rendezvous::arrive(TunnelEnd end, boost::asio::any_io_executor executor) {
  std::optional<TunnelEnd> first;
  {
    std::lock_guard lock(mutex_);
    if (abandoned_) {
      ::close(end.fd);  // the other end is gone: this node sees the pipe close
      return;
    }
    if (!waiting_) {
      waiting_ = std::move(end);
      return;
    }
    first = std::move(waiting_);
    waiting_.reset();
  }
  const bool first_is_connector = first->side == pairing_.connector;
  TunnelEnd& connector = first_is_connector ? *first : end;
  TunnelEnd& acceptor = first_is_connector ? end : *first;
  start_(pairing_, std::move(connector), std::move(acceptor), std::move(executor));
}

void Rendezvous::abandon(ConnId side) {
  std::optional<TunnelEnd> waiting;
  {
    std::lock_guard lock(mutex_);
    abandoned_ = true;
    waiting = std::move(waiting_);
    waiting_.reset();
  }
  if (waiting && waiting->fd >= 0) ::close(waiting->fd);
  log_.info("pairing_abandoned", LogTags{side, peer_of(side)});
}

}  // namespace strelay
