// libstrelay: nodes, errors and events (strelay.h; the threading model is in handles.hpp).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <future>
#include <new>

#include "common/coro.hpp"
#include "common/identity_file.hpp"
#include "common/tickets.hpp"
#include "libstrelay/handles.hpp"

namespace asio = boost::asio;

namespace strelay::capi {

namespace {

std::chrono::milliseconds ms(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

// The strelay_options the application gave, checked, as NodeOptions.
NodeOptions node_options(const strelay_options* o) {
  NodeOptions options;
  if (!o) return options;
  if (o->struct_size < sizeof(strelay_options)) {
    throw std::invalid_argument("strelay_options.struct_size must be sizeof(strelay_options)");
  }
  for (double value : {o->backoff_initial, o->backoff_cap, o->connect_timeout,
                       o->keepalive_interval, o->dead_peer_timeout}) {
    if (!(value >= 0 && value <= 86400)) {
      throw std::invalid_argument("a timer in strelay_options is outside 0..86400 seconds");
    }
  }
  if (o->log_level < 0 || o->log_level > 3) {
    throw std::invalid_argument("strelay_options.log_level must be 0..3");
  }
  if (o->backoff_initial > 0) options.backoff.initial = ms(o->backoff_initial);
  if (o->backoff_cap > 0) options.backoff.cap = ms(o->backoff_cap);
  if (o->connect_timeout > 0) options.connect_timeout = ms(o->connect_timeout);
  if (o->keepalive_interval > 0) {
    options.relay_keepalive_interval = ms(o->keepalive_interval);
    options.stream.keepalive_interval = ms(o->keepalive_interval);
  }
  if (o->dead_peer_timeout > 0) {
    options.relay_dead_peer_timeout = ms(o->dead_peer_timeout);
    options.stream.dead_peer_timeout = ms(o->dead_peer_timeout);
  }
  if (options.stream.dead_peer_timeout <= options.stream.keepalive_interval) {
    throw std::invalid_argument("dead_peer_timeout must be longer than keepalive_interval");
  }
  return options;
}

LogLevel log_level(const strelay_options* o) {
  return static_cast<LogLevel>(o ? o->log_level : 0);
}

std::int64_t microseconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

strelay_event event_of(int type, int status = STRELAY_OK, std::int64_t value_us = 0) {
  strelay_event event{};
  event.type = type;
  event.status = status;
  event.value_us = value_us;
  return event;
}

// The node's events, turned into strelay_events.
class Events : public NodeObserver {
 public:
  explicit Events(strelay_node& node) : node_(node) {}
  void relay_up(const RelayTicket& relay) override {
    node_.emit(event_of(STRELAY_EVENT_RELAY_UP), relay.public_key, relay.address.to_string());
  }
  void relay_down(const RelayTicket& relay, std::error_code why,
                  std::chrono::milliseconds retry_in) override {
    node_.emit(event_of(STRELAY_EVENT_RELAY_DOWN, status_of(why), microseconds(retry_in)),
               relay.public_key, relay.address.to_string());
  }
  void relay_rtt(const RelayTicket& relay, std::chrono::steady_clock::duration rtt) override {
    node_.emit(event_of(STRELAY_EVENT_RELAY_RTT, STRELAY_OK, microseconds(rtt)), relay.public_key,
               relay.address.to_string());
  }
  void connect_failed(const RelayTicket& relay, const PublicKey&, std::error_code why) override {
    node_.emit(event_of(STRELAY_EVENT_CONNECT_FAILED, status_of(why)), relay.public_key,
               relay.address.to_string());
  }
  void peer_connected(const PublicKey& peer, const RelayTicket& via) override {
    node_.emit(event_of(STRELAY_EVENT_PEER_CONNECTED), peer, via.address.to_string());
  }
  void peer_gone(const PublicKey& peer, std::error_code why) override {
    node_.emit(event_of(STRELAY_EVENT_PEER_GONE, status_of(why)), peer, {});
  }
  void peer_rtt(const PublicKey& peer, std::chrono::steady_clock::duration rtt) override {
    node_.emit(event_of(STRELAY_EVENT_PEER_RTT, STRELAY_OK, microseconds(rtt)), peer, {});
  }

 private:
  strelay_node& node_;
};

// A key in base64url, or a friend ticket's JSON text.
std::optional<FriendTicket> parse_friend(const char* text, std::string& error) {
  if (!text) {
    error = "no friend given";
    return std::nullopt;
  }
  std::string key_error;
  if (auto key = try_parse_public_key(text, key_error)) return FriendTicket{*key, {}};
  if (auto ticket = try_parse_friend_ticket(text, "friend ticket", error)) return ticket;
  if (text[0] != '{') error = "not a public key (" + key_error + ") nor a friend ticket";
  return std::nullopt;
}

// A stream the accept filter refused: the peer reads not_allowed.
asio::awaitable<void> close_refused(Stream stream) {
  co_await stream.close(CloseReason::not_allowed, "refused by the application");
}

asio::awaitable<void> accept_loop(strelay_node* n) {
  while (n->node) {
    auto in = co_await n->node->accept();
    if (!in.stream) break;  // not listening any more
    const auto peer = in.stream->peer();
    if (n->filter && n->filter(n->filter_context, peer.bytes().data()) == 0) {
      asio::co_spawn(*n->ioc, close_refused(std::move(*in.stream)), rethrow);
      continue;
    }
    std::shared_ptr<strelay_stream> stream;
    n->adopt(std::move(*in.stream), stream);
    {
      std::lock_guard lock(n->mutex);
      n->incoming.push_back(stream);
    }
    n->changed.notify_all();
    n->emit(event_of(STRELAY_EVENT_INCOMING), peer, in.via ? in.via->address.to_string() : "");
  }
  n->accepting = false;
}

}  // namespace
}  // namespace strelay::capi

using namespace strelay::capi;

// ---------------------------------------------------------------- strelay_node

strelay_node::strelay_node(strelay::Identity identity, const strelay_options* o)
    : log(strelay::Logger::Options{.level = log_level(o)}), options(node_options(o)) {
  public_key = identity.public_key();
  ioc.emplace(1);
  node.emplace(ioc->get_executor(), std::move(identity), log, options);
  observer = std::make_unique<Events>(*this);
  node->set_observer(observer.get());
  thread = std::thread([this] {
    {
      auto guard = asio::make_work_guard(*ioc);
      try {
        ioc->run();
      } catch (const std::exception& e) {  // a bug: the node is over, its calls say so
        log.error("libstrelay_loop_failed", {}, {{"error", e.what()}});
      }
    }
    {
      std::lock_guard lock(mutex);
      closed = true;
    }
    changed.notify_all();
    shutdown_on_loop();
    ioc.reset();  // pending tasks (their callers get STRELAY_CLOSED), coroutines, sockets
    auto keep = std::move(detached_keep);
  });
  loop_id = thread.get_id();
}

strelay_node::~strelay_node() {
  if (thread.joinable()) thread.join();  // only if close() was never called: not through the API
}

bool strelay_node::post(std::function<void()> task) {
  std::lock_guard lock(mutex);
  if (closed) return false;
  asio::post(*ioc, std::move(task));
  return true;
}

int strelay_node::run(const std::function<int()>& task) {
  if (on_loop()) return node ? task() : fail(STRELAY_CLOSED, "the node is closed");
  struct Result {
    int status;
    std::string error;
  };
  auto promise = std::make_shared<std::promise<Result>>();
  auto future = promise->get_future();
  if (!post([promise, &task] {
        int status = STRELAY_INTERNAL;
        try {
          status = task();
        } catch (const std::exception& e) {  // nothing may escape into the loop
          status = fail(STRELAY_INTERNAL, e.what());
        }
        promise->set_value({status, status < 0 ? strelay_last_error() : ""});
      })) {
    return fail(STRELAY_CLOSED, "the node is closed");
  }
  try {
    auto result = future.get();
    return result.status < 0 ? fail(result.status, result.error) : ok();
  } catch (const std::future_error&) {
    return fail(STRELAY_CLOSED, "the node was closed during the call");
  }
}

void strelay_node::emit(strelay_event event, std::optional<strelay::PublicKey> key,
                        std::string address, std::shared_ptr<strelay_stream> stream) {
  post([this, event, key, address = std::move(address), stream = std::move(stream)]() mutable {
    if (!callback) return;
    if (stream) {
      std::lock_guard lock(stream->mutex);
      if (!stream->self) return;  // the application freed it
    }
    event.key = key ? key->bytes().data() : nullptr;
    event.address = address.empty() ? nullptr : address.c_str();
    event.stream = stream.get();
    callback(callback_context, &event);
  });
}

int strelay_node::close() {
  {
    std::lock_guard lock(mutex);
    if (closed) return ok();
    closed = true;
    ioc->stop();  // the loop thread resets ioc only after seeing `closed` under the lock
  }
  changed.notify_all();
  if (on_loop()) {
    detached_keep = shared_from_this();  // freed by the loop thread when it ends
    thread.detach();
  } else {
    thread.join();
  }
  return ok();
}

void strelay_node::shutdown_on_loop() {
  callback = nullptr;
  filter = nullptr;
  node.reset();  // stops listening, aborts queued streams
  for (auto& weak : streams) {
    if (auto stream = weak.lock()) {
      abort_pump(*stream);
      stream->end(STRELAY_CLOSED);
    }
  }
  streams.clear();
  std::lock_guard lock(mutex);
  incoming.clear();
}

void strelay_node::start_accepting() {
  if (accepting) return;
  accepting = true;
  asio::post(*ioc, [this] { asio::co_spawn(*ioc, accept_loop(this), strelay::rethrow); });
}

void strelay_node::adopt(strelay::Stream stream, std::shared_ptr<strelay_stream>& out) {
  out = std::make_shared<strelay_stream>(shared_from_this(), stream.peer());
  std::erase_if(streams, [](const auto& weak) { return weak.expired(); });
  streams.push_back(out);
  start_pump(out, std::move(stream));
}

// ---------------------------------------------------------------- the C functions

namespace {

// Runs `body` (returning a status), turning exceptions into statuses.
template <class Body>
int guarded(Body&& body) {
  try {
    return body();
  } catch (const std::invalid_argument& e) {
    return fail(STRELAY_INVALID, e.what());
  } catch (const std::bad_alloc&) {
    return fail(STRELAY_INTERNAL, "out of memory");
  } catch (const std::exception& e) {
    return fail(STRELAY_INTERNAL, e.what());
  }
}

struct ConnectOutcome {
  std::shared_ptr<strelay_stream> stream;
  std::error_code error;
};

// strelay_node_connect's work on the loop; a closed node destroys it, and the caller's
// future then says so (broken promise).
asio::awaitable<void> connect_task(strelay_node* node, strelay::FriendTicket ticket,
                                   std::shared_ptr<std::promise<ConnectOutcome>> promise) {
  auto result = co_await node->node->connect(ticket);
  ConnectOutcome out{{}, result.error};
  if (result.stream) node->adopt(std::move(*result.stream), out.stream);
  promise->set_value(std::move(out));
}

// A change of the node's loop-side state, made on the loop.
template <class Change>
int change_on_loop(strelay_node* node, Change&& change) {
  if (!node) return fail(STRELAY_INVALID, "a null node");
  return guarded([&] {
    return node->run([&] {
      change();
      return ok();
    });
  });
}

int make_node(strelay::Identity identity, const strelay_options* options, strelay_node** out) {
  auto node = std::make_shared<strelay_node>(std::move(identity), options);
  node->self = node;
  *out = node.get();
  return ok();
}

}  // namespace

extern "C" {

int strelay_node_new_from_file(const char* identity_path, const strelay_options* options,
                               strelay_node** out) {
  if (!identity_path || !out) return fail(STRELAY_INVALID, "a null argument");
  return guarded([&] {
    strelay::init_crypto();
    std::string error;
    auto identity = strelay::try_load_identity(identity_path, error);
    if (!identity) return fail(STRELAY_FILE, error);
    return make_node(std::move(*identity), options, out);
  });
}

int strelay_node_new_from_seed(const uint8_t seed[STRELAY_KEY_BYTES],
                               const strelay_options* options, strelay_node** out) {
  if (!seed || !out) return fail(STRELAY_INVALID, "a null argument");
  return guarded([&] {
    strelay::init_crypto();
    auto identity = strelay::Identity::from_seed(std::span<const std::uint8_t, 32>(seed, 32));
    return make_node(std::move(identity), options, out);
  });
}

int strelay_node_close(strelay_node* node) {
  if (!node) return fail(STRELAY_INVALID, "a null node");
  return node->close();
}

void strelay_node_free(strelay_node* node) {
  if (!node) return;
  auto keep = std::move(node->self);
  node->close();
}

int strelay_node_public_key(strelay_node* node, uint8_t out[STRELAY_KEY_BYTES]) {
  if (!node || !out) return fail(STRELAY_INVALID, "a null argument");
  std::copy(node->public_key.bytes().begin(), node->public_key.bytes().end(), out);
  return ok();
}

int strelay_node_public_key_text(strelay_node* node, char out[STRELAY_KEY_TEXT_BYTES]) {
  if (!node || !out) return fail(STRELAY_INVALID, "a null argument");
  const auto text = node->public_key.to_base64url();
  std::copy(text.begin(), text.end(), out);
  out[text.size()] = '\0';
  return ok();
}

int strelay_node_add_relay(strelay_node* node, const char* relay_ticket_json) {
  if (!node || !relay_ticket_json) return fail(STRELAY_INVALID, "a null argument");
  return guarded([&] {
    std::string error;
    auto ticket = strelay::try_parse_relay_ticket(relay_ticket_json, "relay ticket", error);
    if (!ticket) return fail(STRELAY_INVALID, error);
    return node->run([&] {
      node->relays.push_back(*ticket);
      return ok();
    });
  });
}

static int change_friend(strelay_node* node, const char* friend_, bool add) {
  if (!node) return fail(STRELAY_INVALID, "a null node");
  return guarded([&] {
    std::string error;
    auto ticket = parse_friend(friend_, error);
    if (!ticket) return fail(STRELAY_INVALID, error);
    return node->run([&] {
      if (add) {
        node->friends.insert(ticket->public_key);
      } else {
        node->friends.erase(ticket->public_key);
      }
      node->node->set_friends(node->friends);
      return ok();
    });
  });
}

int strelay_node_add_friend(strelay_node* node, const char* friend_) {
  return change_friend(node, friend_, true);
}

int strelay_node_remove_friend(strelay_node* node, const char* friend_) {
  return change_friend(node, friend_, false);
}

int strelay_node_listen(strelay_node* node) {
  if (!node) return fail(STRELAY_INVALID, "a null node");
  return guarded([&] {
    return node->run([&] {
      if (node->relays.empty()) return fail(STRELAY_INVALID, "no relay added to listen on");
      node->node->listen(node->relays);
      node->start_accepting();
      return ok();
    });
  });
}

int strelay_node_stop_listening(strelay_node* node) {
  return change_on_loop(node, [&] { node->node->stop_listening(); });
}

int strelay_node_reconnect_now(strelay_node* node) {
  return change_on_loop(node, [&] { node->node->reconnect_now(); });
}

int strelay_node_set_accept_filter(strelay_node* node, strelay_accept_fn filter, void* context) {
  return change_on_loop(node, [&] {
    node->filter = filter;
    node->filter_context = context;
  });
}

int strelay_node_set_event_callback(strelay_node* node, strelay_event_fn callback, void* context) {
  return change_on_loop(node, [&] {
    node->callback = callback;
    node->callback_context = context;
  });
}

int strelay_node_accept(strelay_node* node, int timeout_ms, strelay_stream** out) {
  if (!node || !out) return fail(STRELAY_INVALID, "a null argument");
  if (timeout_ms != 0 && node->on_loop()) {
    return fail(STRELAY_WRONG_THREAD, "a blocking accept from a callback: use timeout 0");
  }
  std::unique_lock lock(node->mutex);
  const auto ready = [&] { return node->closed || !node->incoming.empty(); };
  if (timeout_ms < 0) {
    node->changed.wait(lock, ready);
  } else {
    node->changed.wait_for(lock, std::chrono::milliseconds(timeout_ms), ready);
  }
  if (!node->incoming.empty()) {
    auto stream = std::move(node->incoming.front());
    node->incoming.pop_front();
    lock.unlock();
    std::lock_guard stream_lock(stream->mutex);
    stream->self = stream;
    *out = stream.get();
    return ok();
  }
  if (node->closed) return fail(STRELAY_CLOSED, "the node is closed");
  if (timeout_ms == 0) return fail(STRELAY_AGAIN, "no incoming stream yet");
  return fail(STRELAY_TIMEOUT, "no incoming stream within the timeout");
}

int strelay_node_connect(strelay_node* node, const char* friend_, strelay_stream** out) {
  if (!node || !out) return fail(STRELAY_INVALID, "a null argument");
  if (node->on_loop()) return fail(STRELAY_WRONG_THREAD, "strelay_node_connect from a callback");
  return guarded([&] {
    std::string error;
    auto ticket = parse_friend(friend_, error);
    if (!ticket) return fail(STRELAY_INVALID, error);
    auto promise = std::make_shared<std::promise<ConnectOutcome>>();
    auto future = promise->get_future();
    const bool posted = node->post([node, promise, ticket = std::move(*ticket)]() mutable {
      for (const auto& relay : node->relays) ticket.relays.push_back(relay);
      asio::co_spawn(*node->ioc, connect_task(node, std::move(ticket), promise), strelay::rethrow);
    });
    if (!posted) return fail(STRELAY_CLOSED, "the node is closed");
    ConnectOutcome result;
    try {
      result = future.get();
    } catch (const std::future_error&) {
      return fail(STRELAY_CLOSED, "the node was closed during the connect");
    }
    if (!result.stream) return fail(result.error);
    std::lock_guard stream_lock(result.stream->mutex);
    result.stream->self = result.stream;
    *out = result.stream.get();
    return ok();
  });
}

}  // extern "C"
