#include "common/node.hpp"

#include <boost/asio/co_spawn.hpp>
#include <deque>

#include "common/coro.hpp"
#include "common/errors.hpp"
#include "common/relay_link.hpp"
#include "common/wakeup.hpp"

namespace strelay {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// Where a connect attempt failed: what each stage's error says about the peer.
enum class Stage { relay, outcome, end_to_end };

// How much an attempt's error tells the user (see Node::connect): higher wins.
int telling(std::error_code error, Stage stage) {
  if (error == errc::rejected) return 6;
  if (stage == Stage::end_to_end) return 5;
  if (error == errc::not_found || error == errc::timeout || error == errc::peer_gone) return 4;
  if (stage == Stage::outcome) return 3;
  if (error != errc::relay_unreachable) return 2;
  return 1;
}

struct Attempt {
  std::optional<Channel> channel;  // the end-to-end channel, on success
  std::error_code error;
  Stage stage = Stage::relay;
};

}  // namespace

// Ownership: everything runs on `executor`. The links, the queue and the counters belong to
// the Impl; coroutines (links, accept tasks, connect calls) hold a shared_ptr to it, and
// callbacks from links and streams hold a weak_ptr, so a destroyed Node is never called into.
struct Node::Impl : std::enable_shared_from_this<Node::Impl> {
  Impl(asio::any_io_executor ex, Identity identity, Logger& logger, NodeOptions opts)
      : executor(std::move(ex)),
        self(std::make_shared<const Identity>(std::move(identity))),
        log(logger),
        options(opts),
        accept_wake(executor) {
    static_cast<void>(Backoff(options.backoff));  // throws now, not in a link later
    if (!options.stream.clock) options.stream.clock = options.clock;
  }

  asio::awaitable<Attempt> connect_via(const RelayTicket& relay, const PublicKey& peer);
  asio::awaitable<void> accept_via(RelayTicket relay, PublicKey from);
  asio::awaitable<std::error_code> accept_hop(const RelayTicket& relay, const PublicKey& from,
                                              std::optional<Channel>& hop);
  IncomingDecision incoming(const RelayTicket& relay, const PublicKey& from);
  LinkCallbacks callbacks_for(const RelayTicket& relay);
  StreamHooks hooks_for(const PublicKey& peer);
  bool is_friend(const PublicKey& key) const { return friends.contains(key); }
  void stop_listening();

  asio::any_io_executor executor;
  std::shared_ptr<const Identity> self;
  Logger& log;
  NodeOptions options;
  NodeObserver* observer = nullptr;
  std::set<PublicKey> friends;

  std::vector<std::shared_ptr<RelayLink>> links;
  bool listening = false;
  std::deque<AcceptResult> queue;       // established streams waiting for accept()
  std::size_t accepting = 0;            // accepts in progress, counted against the queue's bound
  std::uint64_t listen_generation = 0;  // streams accepted for an older listen() are dropped
  Wakeup accept_wake;
};

// ---------------------------------------------------------------- connect

asio::awaitable<Attempt> Node::Impl::connect_via(const RelayTicket& relay, const PublicKey& peer) {
  Attempt attempt;
  std::optional<Channel> hop;
  attempt.error = co_await open_relay_channel(relay, *self, Connect{peer},
                                              Clock::now() + options.connect_timeout, hop);
  if (attempt.error) co_return attempt;

  attempt.stage = Stage::outcome;
  PublicKey paired;
  attempt.error = co_await await_pairing(*hop, Clock::now() + options.outcome_timeout, paired);
  if (!attempt.error && paired != peer) attempt.error = errc::protocol_error;  // a lying relay
  if (attempt.error) {
    hop->close();
    co_return attempt;
  }

  attempt.stage = Stage::end_to_end;
  auto socket = hop->release_socket();
  attempt.error = co_await connect_stream_handshake(
      socket, *self, peer, Clock::now() + options.handshake_timeout, attempt.channel);
  if (attempt.error) {
    boost::system::error_code ignored;
    socket.close(ignored);
  }
  co_return attempt;
}

asio::awaitable<ConnectResult> Node::connect(PublicKey peer, std::vector<RelayTicket> relays) {
  auto impl = impl_;
  ConnectResult result;
  result.error = errc::relay_unreachable;  // also the answer for an empty list
  int best = 0;
  for (const auto& relay : relays) {
    auto attempt = co_await impl->connect_via(relay, peer);
    if (attempt.channel) {
      result.stream.emplace(std::move(*attempt.channel), impl->options.stream,
                            impl->hooks_for(peer));
      result.error = {};
      result.via = relay;
      impl->log.info("peer_connected", {0, peer}, {{"relay", relay.address.to_string()}});
      if (impl->observer) impl->observer->peer_connected(peer, relay);
      co_return result;
    }
    impl->log.info("connect_failed", {0, peer},
                   {{"relay", relay.address.to_string()}, {"error", attempt.error}});
    if (impl->observer) impl->observer->connect_failed(relay, peer, attempt.error);
    result.failures.push_back({relay, attempt.error});
    const int rank = telling(attempt.error, attempt.stage);
    if (rank > best) {
      best = rank;
      result.error = attempt.error;
    }
    if (attempt.error == errc::rejected) break;  // the peer said no: it would say it again
  }
  co_return result;
}

// ---------------------------------------------------------------- listen and accept

IncomingDecision Node::Impl::incoming(const RelayTicket& relay, const PublicKey& from) {
  if (!is_friend(from)) {
    log.info("incoming_rejected", {0, from}, {{"relay", relay.address.to_string()}});
    return IncomingDecision::reject;
  }
  if (queue.size() + accepting >= options.max_queued_streams) {
    log.warn("incoming_deferred", {0, from}, {{"queued", queue.size() + accepting}});
    return IncomingDecision::ignore;
  }
  ++accepting;
  asio::co_spawn(
      executor, [impl = shared_from_this(), relay, from] { return impl->accept_via(relay, from); },
      rethrow);
  return IncomingDecision::accept;
}

// The Accept for `from`, on the relay's standby connection when the link holds one (its
// handshake is done: one round trip), else on a new connection. A standby that fails without
// the relay's answer to the Accept (its relay closed it meanwhile, or it broke) costs only the
// fallback; an answer (no_pending, not_allowed) is final.
asio::awaitable<std::error_code> Node::Impl::accept_hop(const RelayTicket& relay,
                                                        const PublicKey& from,
                                                        std::optional<Channel>& hop) {
  const auto deadline = Clock::now() + options.connect_timeout;
  PublicKey paired;
  for (const auto& link : links) {
    if (link->ticket() != relay) continue;
    hop = link->take_standby();
    break;
  }
  if (hop) {
    const auto bytes = encode(NodeMessage{Accept{from}});
    auto ec = co_await hop->send(FrameKind::control, bytes, deadline);
    if (!ec) ec = co_await await_pairing(*hop, deadline, paired);
    if (!ec || ec == errc::no_pending || ec == errc::not_allowed) {
      if (!ec && paired != from) ec = errc::protocol_error;  // paired with someone else
      co_return ec;
    }
    log.debug("standby_unusable", {0, from}, {{"error", ec}});
    hop->close();
    hop.reset();
  }
  auto ec = co_await open_relay_channel(relay, *self, Accept{from}, deadline, hop);
  if (!ec) ec = co_await await_pairing(*hop, Clock::now() + options.connect_timeout, paired);
  if (!ec && paired != from) ec = errc::protocol_error;  // a relay pairing us with someone else
  co_return ec;
}

// Accepts `from`'s pending connect (accept_hop), then runs the end-to-end handshake
// as the responder: the initiator must be `from` (announced by the relay twice) and a friend.
asio::awaitable<void> Node::Impl::accept_via(RelayTicket relay, PublicKey from) {
  const auto generation = listen_generation;
  std::optional<Channel> hop;
  auto ec = co_await accept_hop(relay, from, hop);
  std::optional<Channel> channel;
  if (!ec) {
    auto socket = hop->release_socket();
    const std::function<bool(const PublicKey&)> friendly = [this](const PublicKey& key) {
      return is_friend(key);
    };
    ec = co_await accept_stream_handshake(socket, *self, from, friendly,
                                          Clock::now() + options.handshake_timeout, channel);
    if (ec) {
      boost::system::error_code ignored;
      socket.close(ignored);
    }
  } else if (hop) {
    hop->close();
  }
  --accepting;
  if (ec) {
    log.info("accept_failed", {0, from}, {{"relay", relay.address.to_string()}, {"error", ec}});
    co_return;
  }
  if (!listening || generation != listen_generation) co_return;  // dropped: aborts the stream
  AcceptResult result;
  result.stream.emplace(std::move(*channel), options.stream, hooks_for(from));
  result.via = relay;
  log.info("peer_accepted", {0, from}, {{"relay", relay.address.to_string()}});
  if (observer) observer->peer_connected(from, relay);
  queue.push_back(std::move(result));
  accept_wake.notify();
}

LinkCallbacks Node::Impl::callbacks_for(const RelayTicket& relay) {
  std::weak_ptr<Impl> weak = weak_from_this();
  LinkCallbacks callbacks;
  callbacks.on_up = [weak, relay] {
    if (auto impl = weak.lock(); impl && impl->observer) impl->observer->relay_up(relay);
  };
  callbacks.on_down = [weak, relay](std::error_code why, std::chrono::milliseconds retry_in) {
    if (auto impl = weak.lock(); impl && impl->observer) {
      impl->observer->relay_down(relay, why, retry_in);
    }
  };
  callbacks.on_rtt = [weak, relay](Clock::duration rtt) {
    if (auto impl = weak.lock(); impl && impl->observer) impl->observer->relay_rtt(relay, rtt);
  };
  callbacks.on_incoming = [weak, relay](const PublicKey& from) {
    auto impl = weak.lock();
    return impl ? impl->incoming(relay, from) : IncomingDecision::ignore;
  };
  return callbacks;
}

StreamHooks Node::Impl::hooks_for(const PublicKey& peer) {
  std::weak_ptr<Impl> weak = weak_from_this();
  StreamHooks hooks;
  hooks.on_rtt = [weak, peer](Clock::duration rtt) {
    if (auto impl = weak.lock(); impl && impl->observer) impl->observer->peer_rtt(peer, rtt);
  };
  hooks.on_end = [weak, peer](std::error_code why) {
    auto impl = weak.lock();
    if (!impl) return;
    if (why) {
      impl->log.info("peer_gone", {0, peer}, {{"error", why}});
    } else {
      impl->log.info("peer_done", {0, peer});
    }
    if (impl->observer) impl->observer->peer_gone(peer, why);
  };
  return hooks;
}

void Node::Impl::stop_listening() {
  for (auto& link : links) link->stop();
  links.clear();
  listening = false;
  ++listen_generation;
  queue.clear();  // queued streams abort
  accept_wake.notify();
}

// ---------------------------------------------------------------- Node

Node::Node(asio::any_io_executor executor, Identity identity, Logger& log, NodeOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(identity), log, options)) {}

Node::Node(Node&&) noexcept = default;
Node& Node::operator=(Node&& other) noexcept {
  if (this != &other) {
    if (impl_) impl_->stop_listening();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Node::~Node() {
  if (!impl_) return;
  impl_->observer = nullptr;
  impl_->stop_listening();
}

const PublicKey& Node::public_key() const {
  return impl_->self->public_key();
}

void Node::set_observer(NodeObserver* observer) {
  impl_->observer = observer;
}

void Node::set_friends(std::set<PublicKey> friends) {
  impl_->friends = std::move(friends);
}

void Node::listen(std::vector<RelayTicket> relays) {
  impl_->stop_listening();
  impl_->listening = true;
  LinkOptions options;
  options.backoff = impl_->options.backoff;
  options.attempt_timeout = impl_->options.connect_timeout;
  options.keepalive_interval = impl_->options.relay_keepalive_interval;
  options.dead_peer_timeout = impl_->options.relay_dead_peer_timeout;
  options.write_stall = impl_->options.stream.write_stall;
  options.clock = impl_->options.clock;
  options.standby = impl_->options.relay_standby;
  for (auto& relay : relays) {
    auto link = std::make_shared<RelayLink>(impl_->executor, relay, impl_->self, options,
                                            impl_->callbacks_for(relay), impl_->log);
    link->start();
    impl_->links.push_back(std::move(link));
  }
}

void Node::stop_listening() {
  impl_->stop_listening();
}

void Node::reconnect_now() {
  for (auto& link : impl_->links) link->reconnect_now();
}

std::vector<RelayStatus> Node::relays() const {
  std::vector<RelayStatus> out;
  for (const auto& link : impl_->links) out.push_back({link->ticket(), link->up(), link->rtt()});
  return out;
}

asio::awaitable<AcceptResult> Node::accept(Clock::time_point until) {
  auto impl = impl_;
  while (impl->queue.empty()) {
    if (!impl->listening) co_return AcceptResult{std::nullopt, errc::channel_closed, {}};
    if (now_on(impl->options.clock) >= until) {
      co_return AcceptResult{std::nullopt, errc::timeout, {}};
    }
    co_await impl->accept_wake.wait(timer_deadline(impl->options.clock, until));
  }
  AcceptResult result = std::move(impl->queue.front());
  impl->queue.pop_front();
  co_return result;
}

}  // namespace strelay
