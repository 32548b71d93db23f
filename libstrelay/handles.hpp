// The C ABI's handles (libstrelay/strelay.h) over the C++ node library (common/node.hpp).
//
// Threads: each strelay_node owns an io_context run by its own thread (the loop); the C++ Node
// and its Streams live there and are touched only there. An application thread reaches them
// by posting a task and waiting for its result (strelay_node::run); a call made on the loop
// itself (from a callback) runs inline. What both sides share (the queue of accepted streams,
// each stream's byte buffers and end) sits under a mutex with a condition variable for the
// blocking calls. Callbacks run on the loop, always from a posted task of their own, so a
// strelay_* call never calls back into the application from inside itself.
//
// Lifetimes: the application's reference to a handle is `self` (dropped by *_free). Loop-side
// objects (the Node, a stream's StreamPump) are destroyed on the loop before its io_context,
// which the loop thread destroys when it ends; pending tasks die with it, and a caller waiting
// for one gets STRELAY_CLOSED.
#pragma once

#include <boost/asio/io_context.hpp>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "common/node.hpp"
#include "libstrelay/strelay.h"

namespace strelay::capi {

// Sets the calling thread's strelay_last_error() and returns `status`.
int fail(int status, std::string message);
int fail(std::error_code error);
int ok();  // clears the last error; returns STRELAY_OK
// The C status for an error of the node library (the classes of stcat's exit codes).
int status_of(std::error_code error);

struct StreamPump;

}  // namespace strelay::capi

struct strelay_node : std::enable_shared_from_this<strelay_node> {
  strelay_node(strelay::Identity identity, const strelay_options* options);
  ~strelay_node();

  bool on_loop() const { return std::this_thread::get_id() == loop_id; }
  // Runs `task` on the loop and returns its result (inline on the loop); STRELAY_CLOSED when
  // the node is closed before it ran.
  int run(const std::function<int()>& task);
  // Queues `task` on the loop; false once the node is closed.
  bool post(std::function<void()> task);
  // Delivers an event to the application's callback, from a task of its own.
  void emit(strelay_event event, std::optional<strelay::PublicKey> key, std::string address,
            std::shared_ptr<strelay_stream> stream = {});
  int close();

  void start_accepting();   // loop
  void shutdown_on_loop();  // loop: ends the Node and every stream
  void adopt(strelay::Stream stream, std::shared_ptr<strelay_stream>& out);  // loop

  strelay::Logger log;
  std::optional<boost::asio::io_context> ioc;
  strelay::NodeOptions options;
  std::optional<strelay::Node> node;  // loop
  std::thread thread;
  std::thread::id loop_id;
  std::shared_ptr<strelay_node> self;           // the application's reference
  std::shared_ptr<strelay_node> detached_keep;  // closed from the loop: the thread frees it
  strelay::PublicKey public_key;

  // Loop only.
  std::vector<strelay::RelayTicket> relays;
  std::set<strelay::PublicKey> friends;
  std::vector<std::weak_ptr<strelay_stream>> streams;
  strelay_event_fn callback = nullptr;
  void* callback_context = nullptr;
  strelay_accept_fn filter = nullptr;
  void* filter_context = nullptr;
  bool accepting = false;
  std::uint64_t listen_generation = 0;
  std::unique_ptr<strelay::NodeObserver> observer;

  // Shared, under `mutex`.
  std::mutex mutex;
  std::condition_variable changed;
  bool closed = false;
  std::deque<std::shared_ptr<strelay_stream>> incoming;
};

struct strelay_stream : std::enable_shared_from_this<strelay_stream> {
  explicit strelay_stream(std::shared_ptr<strelay_node> owner, const strelay::PublicKey& key)
      : node(std::move(owner)), peer(key) {}

  // Wakes the pump on the loop (after the application changed the buffers or asked to end).
  void poke();
  // Loop: the stream is over with `status`; wakes waiters and emits STREAM_ENDED once.
  void end(int status);
  int ready_mask();  // under mutex

  std::shared_ptr<strelay_node> node;
  strelay::PublicKey peer;
  std::shared_ptr<strelay_stream> self;             // the application's reference
  std::shared_ptr<strelay::capi::StreamPump> pump;  // loop only

  // Shared, under `mutex`.
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::uint8_t> in;  // received, not yet read (from in_at)
  std::size_t in_at = 0;
  bool peer_eof = false;
  std::vector<std::uint8_t> out;  // written, not yet sent
  bool write_blocked = false;     // a write got STRELAY_AGAIN: WRITABLE is due
  bool shutdown = false;          // the application's half-close
  bool close_requested = false;
  int close_reason = 0;
  std::string close_detail;
  bool ended = false;
  int status = STRELAY_AGAIN;
  std::uint64_t sent = 0, received = 0;
  std::int64_t rtt_us = -1;
};

namespace strelay::capi {
// Room in each direction's buffer between the application and the loop.
inline constexpr std::size_t stream_buffer_bytes = 256 * 1024;
// Starts the pump coroutines of a stream adopted by the node (libstrelay/stream.cpp).
void start_pump(const std::shared_ptr<strelay_stream>& stream, Stream cxx_stream);
// Loop: ends the stream's C++ side at once (node shutdown, or a freed handle).
void abort_pump(strelay_stream& stream);
}  // namespace strelay::capi
