#include "common/node.hpp"

#include <boost/asio/co_spawn.hpp>
#include <deque>
#include <map>

#include "common/coro.hpp"
#include "common/early_e2e.hpp"
#include "common/errors.hpp"
#include "common/recent_set.hpp"
#include "common/relay_link.hpp"
#include "common/topic.hpp"
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
  bool early_e2e = false;  // the listener answered our msg1 sent with Connect
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
  asio::awaitable<std::error_code> connect_e2e(tcp::socket& socket, const PublicKey& peer,
                                               std::optional<InitiatorHandshake>& early,
                                               bool early_e2e, std::optional<Channel>& out);
  asio::awaitable<void> accept_via(RelayTicket relay, PublicKey from,
                                   std::optional<E2eMsg1> e2e_msg1);
  asio::awaitable<std::error_code> accept_hop(const RelayTicket& relay, const Accept& accept,
                                              std::optional<ResponderHandshake>& early,
                                              std::optional<Channel>& hop);
  IncomingDecision incoming(const RelayTicket& relay, const PublicKey& from,
                            const std::optional<E2eMsg1>& e2e_msg1);
  LinkCallbacks callbacks_for(const RelayTicket& relay);
  StreamHooks hooks_for(const PublicKey& peer);
  bool is_friend(const PublicKey& key) const;
  void stop_listening();

  // A joined topic: its id on each relay, the peers introduced on it.
  struct Topic {
    TopicOptions options;
    std::map<PublicKey, TopicId> ids;  // relay key -> the topic's id there
    // (relay key, peer) delivered while that relay's listen lasts
    RecentSet<std::pair<PublicKey, PublicKey>> delivered{node_max_topic_peers};
    std::map<PublicKey, std::uint32_t> answering;      // relay key -> introductions of our join
    RecentSet<PublicKey> peers{node_max_topic_peers};  // introduced anywhere: friends if opted in
  };
  void join_on(RelayLink& link, const std::string& name, Topic& topic);
  void on_topic(const RelayTicket& relay, const RelayMessage& message);
  void relay_lost(const RelayTicket& relay);

  asio::any_io_executor executor;
  std::shared_ptr<const Identity> self;
  Logger& log;
  NodeOptions options;
  NodeObserver* observer = nullptr;
  std::set<PublicKey> friends;
  std::map<std::string, Topic> topics;  // joined, by name

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
  // Our end-to-end msg1 goes with the Connect (docs/protocol.md 4.4): a listener that takes it
  // answers with msg2 as the pipe's first bytes.
  Connect request{peer};
  std::optional<InitiatorHandshake> early;
  if (options.early_e2e) {
    early.emplace(*self, peer, HandshakeLayer::end_to_end);
    request.e2e_msg1 = early_msg1(*early);
  }
  attempt.error = co_await open_relay_channel(relay, *self, request,
                                              Clock::now() + options.connect_timeout, hop);
  if (attempt.error) co_return attempt;

  attempt.stage = Stage::outcome;
  PublicKey paired;
  bool early_e2e = false;
  attempt.error =
      co_await await_pairing(*hop, Clock::now() + options.outcome_timeout, paired, &early_e2e);
  if (!attempt.error && paired != peer) attempt.error = errc::protocol_error;  // a lying relay
  if (attempt.error) {
    hop->close();
    co_return attempt;
  }

  attempt.stage = Stage::end_to_end;
  auto socket = hop->release_socket();
  attempt.early_e2e = early_e2e;
  attempt.error = co_await connect_e2e(socket, peer, early, early_e2e, attempt.channel);
  if (attempt.error) {
    boost::system::error_code ignored;
    socket.close(ignored);
  }
  co_return attempt;
}

// The end-to-end handshake on the pipe: from msg2 on when the listener answered our early msg1,
// else the whole of it (our early msg1 is then never used: a fresh handshake runs).
asio::awaitable<std::error_code> Node::Impl::connect_e2e(tcp::socket& socket, const PublicKey& peer,
                                                         std::optional<InitiatorHandshake>& early,
                                                         bool early_e2e,
                                                         std::optional<Channel>& out) {
  const auto deadline = Clock::now() + options.handshake_timeout;
  if (!early_e2e) co_return co_await connect_stream_handshake(socket, *self, peer, deadline, out);
  if (!early) co_return errc::protocol_error;  // "early" for a msg1 we never sent: a lying relay
  co_return co_await finish_early_connect(socket, *early, deadline, out);
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
      impl->log.info("peer_connected", {0, peer},
                     {{"relay", relay.address.to_string()}, {"early_e2e", attempt.early_e2e}});
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

IncomingDecision Node::Impl::incoming(const RelayTicket& relay, const PublicKey& from,
                                      const std::optional<E2eMsg1>& e2e_msg1) {
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
      executor,
      [impl = shared_from_this(), relay, from, e2e_msg1] {
        return impl->accept_via(relay, from, e2e_msg1);
      },
      rethrow);
  return IncomingDecision::accept;
}

// The Accept for `from`, on the relay's standby connection when the link holds one (its
// handshake is done: one round trip), else on a new connection. A standby that fails without
// the relay's answer to the Accept (its relay closed it meanwhile, or it broke) costs only the
// fallback; an answer (no_pending, not_allowed) is final. With `early`, our end-to-end msg2
// follows the Accept frame at once (made after it is sent, so its signature overlaps the
// relay's pairing): the relay reads no byte past the Accept, so msg2 is the pipe's first.
asio::awaitable<std::error_code> Node::Impl::accept_hop(const RelayTicket& relay,
                                                        const Accept& accept,
                                                        std::optional<ResponderHandshake>& early,
                                                        std::optional<Channel>& hop) {
  const auto& from = accept.from;
  const auto deadline = Clock::now() + options.connect_timeout;
  std::vector<std::uint8_t> msg2;  // made once, sent again on a fallback connection
  auto send_msg2 = [&]() -> asio::awaitable<std::error_code> {
    if (!early) co_return std::error_code{};
    if (msg2.empty()) msg2 = early_msg2(*early);
    co_return co_await send_early_msg2(hop->socket(), msg2, deadline);
  };
  PublicKey paired;
  std::shared_ptr<RelayLink> standby_link;
  for (const auto& link : links) {
    if (link->ticket() != relay) continue;
    hop = link->take_standby();
    if (hop) standby_link = link;
    break;
  }
  if (hop) {
    const auto bytes = encode(NodeMessage{accept});
    auto ec = co_await hop->send(FrameKind::control, bytes, deadline);
    if (!ec) ec = co_await send_msg2();
    if (!ec) ec = co_await await_pairing(*hop, deadline, paired);
    standby_link->standby_used();
    if (!ec || ec == errc::no_pending || ec == errc::not_allowed) {
      if (!ec && paired != from) ec = errc::protocol_error;  // paired with someone else
      co_return ec;
    }
    log.debug("standby_unusable", {0, from}, {{"error", ec}});
    hop->close();
    hop.reset();
  }
  auto ec = co_await open_relay_channel(relay, *self, accept, deadline, hop);
  if (!ec) ec = co_await send_msg2();
  if (!ec) ec = co_await await_pairing(*hop, Clock::now() + options.connect_timeout, paired);
  if (!ec && paired != from) ec = errc::protocol_error;  // a relay pairing us with someone else
  co_return ec;
}

// Accepts `from`'s pending connect (accept_hop), then runs the end-to-end handshake
// as the responder: the initiator must be `from` (announced by the relay twice) and a friend.
asio::awaitable<void> Node::Impl::accept_via(RelayTicket relay, PublicKey from,
                                             std::optional<E2eMsg1> e2e_msg1) {
  const auto generation = listen_generation;
  // The connector's msg1 came with IncomingConnection: our msg2 is made now and follows the
  // Accept, which names that msg1. A msg1 that fails its checks is not answered early: the
  // plain Accept makes the connector run the whole handshake in the pipe.
  std::optional<ResponderHandshake> early;
  if (e2e_msg1 && options.early_e2e) {
    early.emplace(*self, HandshakeLayer::end_to_end);
    if (!take_early_msg1(*early, *e2e_msg1)) early.reset();
  }
  std::optional<Channel> hop;
  auto ec = co_await accept_hop(relay, Accept{from, early ? e2e_msg1 : std::nullopt}, early, hop);
  std::optional<Channel> channel;
  if (!ec) {
    auto socket = hop->release_socket();
    const std::function<bool(const PublicKey&)> friendly = [this](const PublicKey& key) {
      return is_friend(key);
    };
    const auto deadline = Clock::now() + options.handshake_timeout;
    if (early) {
      ec = co_await finish_early_accept(socket, *early, from, friendly, deadline, channel);
    } else {
      ec = co_await accept_stream_handshake(socket, *self, from, friendly, deadline, channel);
    }
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
  log.info("peer_accepted", {0, from},
           {{"relay", relay.address.to_string()}, {"early_e2e", early.has_value()}});
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
    auto impl = weak.lock();
    if (!impl) return;
    impl->relay_lost(relay);
    if (impl->observer) impl->observer->relay_down(relay, why, retry_in);
  };
  callbacks.on_topic = [weak, relay](const RelayMessage& message) {
    if (auto impl = weak.lock()) impl->on_topic(relay, message);
  };
  callbacks.on_topics_unsupported = [weak, relay] {
    auto impl = weak.lock();
    if (!impl || !impl->observer) return;
    for (const auto& [name, topic] : impl->topics) {
      impl->observer->topic_refused(name, relay, errc::topics_unsupported);
    }
  };
  callbacks.on_rtt = [weak, relay](Clock::duration rtt) {
    if (auto impl = weak.lock(); impl && impl->observer) impl->observer->relay_rtt(relay, rtt);
  };
  callbacks.on_incoming = [weak, relay](const PublicKey& from,
                                        const std::optional<E2eMsg1>& e2e_msg1) {
    auto impl = weak.lock();
    return impl ? impl->incoming(relay, from, e2e_msg1) : IncomingDecision::ignore;
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

bool Node::Impl::is_friend(const PublicKey& key) const {
  if (friends.contains(key)) return true;
  for (const auto& [name, topic] : topics) {
    if (topic.options.accept_introduced && topic.peers.contains(key)) return true;
  }
  return false;
}

// ---------------------------------------------------------------- topics

void Node::Impl::join_on(RelayLink& link, const std::string& name, Topic& topic) {
  const auto& relay_key = link.ticket().public_key;
  const auto id = topic.ids.try_emplace(relay_key, topic_id(relay_key, name)).first->second;
  link.join_topic(id);
}

// A topic message from `relay`'s link. Anything about a topic id this node did not join there
// is dropped: the application hears only of topics it joined.
void Node::Impl::on_topic(const RelayTicket& relay, const RelayMessage& message) {
  const TopicId* id = std::visit(
      [](const auto& m) -> const TopicId* {
        if constexpr (requires { m.topic; }) return &m.topic;
        return nullptr;
      },
      message);
  if (id == nullptr) return;
  const auto& relay_key = relay.public_key;
  auto match = std::find_if(topics.begin(), topics.end(), [&](const auto& entry) {
    const auto found = entry.second.ids.find(relay_key);
    return found != entry.second.ids.end() && found->second == *id;
  });
  if (match == topics.end()) {
    log.debug("topic_message_dropped", {0, relay_key}, {});
    return;
  }
  const auto& name = match->first;
  auto& topic = match->second;
  if (const auto* joined = std::get_if<TopicJoined>(&message)) {
    topic.answering[relay_key] = joined->introduced;
    if (observer) observer->topic_joined(name, relay, joined->members, joined->introduced);
  } else if (const auto* refused = std::get_if<TopicRefused>(&message)) {
    if (observer) observer->topic_refused(name, relay, to_error_code(refused->reason));
  } else if (const auto* introduced = std::get_if<Introduction>(&message)) {
    auto& answering = topic.answering[relay_key];
    const bool newcomer = answering > 0;
    if (newcomer) --answering;
    if (introduced->peer == self->public_key()) return;  // a relay that introduces us to us
    if (!topic.delivered.insert({relay_key, introduced->peer})) return;
    topic.peers.insert(introduced->peer);
    log.debug("introduction", {0, introduced->peer}, {{"relay", relay.address.to_string()}});
    if (observer) observer->introduction({name, introduced->peer, relay, newcomer});
  }
}

// A link's listen connection ended: its relay forgets our topics, and re-introduces the
// members when the link joins again.
void Node::Impl::relay_lost(const RelayTicket& relay) {
  for (auto& [name, topic] : topics) {
    topic.delivered.erase_if([&](const auto& entry) { return entry.first == relay.public_key; });
    topic.answering.erase(relay.public_key);
  }
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
  options.early_e2e = impl_->options.early_e2e;
  for (auto& relay : relays) {
    auto link = std::make_shared<RelayLink>(impl_->executor, relay, impl_->self, options,
                                            impl_->callbacks_for(relay), impl_->log);
    for (auto& [name, topic] : impl_->topics) impl_->join_on(*link, name, topic);
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

void Node::join_topic(const std::string& name, TopicOptions options) {
  static_cast<void>(topic_id(PublicKey{}, name));  // throws for a bad name, before any change
  auto& topic = impl_->topics[name];
  topic.options = options;
  for (auto& link : impl_->links) impl_->join_on(*link, name, topic);
}

void Node::leave_topic(const std::string& name) {
  const auto found = impl_->topics.find(name);
  if (found == impl_->topics.end()) return;
  for (auto& link : impl_->links) {
    const auto id = found->second.ids.find(link->ticket().public_key);
    if (id != found->second.ids.end()) link->leave_topic(id->second);
  }
  impl_->topics.erase(found);
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
