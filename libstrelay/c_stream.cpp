// libstrelay: streams (strelay.h). A stream's bytes cross threads through two buffers under
// the handle's mutex: `in` (filled by the pump's reader on the loop, emptied by
// strelay_stream_read) and `out` (filled by strelay_stream_write, emptied by the pump's
// writer). The pump's coroutines drive the C++ Stream on the loop; the application's calls
// never wait for the network, only for the mutex.
#include <boost/asio/co_spawn.hpp>
#include <cstring>

#include "common/coro.hpp"
#include "common/wakeup.hpp"
#include "libstrelay/handles.hpp"

namespace asio = boost::asio;

namespace strelay::capi {

// The loop side of a stream: the C++ Stream and the waits of its two coroutines. Held by the
// handle (loop only) and by the coroutines, so it lives until both are done.
struct StreamPump {
  StreamPump(Stream s, const asio::any_io_executor& executor)
      : stream(std::move(s)), room(executor), work(executor) {}
  Stream stream;
  Wakeup room;  // the reader waits for the application to read
  Wakeup work;  // the writer waits for bytes, a shutdown or a close
  void notify() {
    room.notify();
    work.notify();
  }
  void update_rtt(strelay_stream& s) {
    if (const auto rtt = stream.stats().rtt) {
      std::lock_guard lock(s.mutex);
      s.rtt_us = std::chrono::duration_cast<std::chrono::microseconds>(*rtt).count();
    }
  }
};

namespace {

strelay_event stream_event(int type, int status = STRELAY_OK) {
  strelay_event event{};
  event.type = type;
  event.status = status;
  return event;
}

// The peer's bytes into `in`, while it has room; its end of data or error ends the reader.
asio::awaitable<void> reader(std::shared_ptr<strelay_stream> s, std::shared_ptr<StreamPump> p) {
  std::vector<std::uint8_t> buffer(Stream::max_frame_data);
  for (;;) {
    bool room = false;
    {
      std::lock_guard lock(s->mutex);
      if (s->ended) co_return;
      room = s->in.size() - s->in_at < stream_buffer_bytes;
    }
    if (!room) {
      co_await p->room.wait();
      continue;
    }
    const auto r = co_await p->stream.read_some(buffer);
    p->update_rtt(*s);
    bool readable = false, closing = false;
    {
      std::lock_guard lock(s->mutex);
      closing = s->close_requested;
      if (r.bytes > 0) {
        readable = s->in.size() == s->in_at;
        if (s->in_at > 0 && s->in_at * 2 >= s->in.size()) {  // drop what was read
          s->in.erase(s->in.begin(), s->in.begin() + static_cast<std::ptrdiff_t>(s->in_at));
          s->in_at = 0;
        }
        s->in.insert(s->in.end(), buffer.begin(), buffer.begin() + static_cast<long>(r.bytes));
      } else if (r.eof()) {
        s->peer_eof = readable = true;
      }
    }
    s->changed.notify_all();
    if (readable) s->node->emit(stream_event(STRELAY_EVENT_STREAM_READABLE), {}, {}, s);
    if (r.error) {
      // After our own close the writer reports its outcome; otherwise this error ends it.
      if (!closing) s->end(status_of(r.error));
      co_return;
    }
    if (r.eof()) co_return;
  }
}

// What the writer does next, taken from the shared state under the mutex.
struct WriterStep {
  std::vector<std::uint8_t> bytes;
  bool shutdown = false, close = false, writable = false, ended = false;
  CloseReason reason = CloseReason::normal;
  std::string detail;
};

WriterStep next_step(strelay_stream& s, bool& shutdown_sent) {
  WriterStep step;
  std::lock_guard lock(s.mutex);
  if (s.ended) {
    step.ended = true;
  } else if (!s.out.empty()) {
    step.bytes.swap(s.out);
    step.writable = s.write_blocked;
    s.write_blocked = false;
  } else if (s.shutdown && !shutdown_sent) {
    step.shutdown = shutdown_sent = true;
  } else if (s.close_requested) {
    step.close = true;
    step.reason = static_cast<CloseReason>(s.close_reason);
    step.detail = s.close_detail;
  }
  return step;
}

// `out` to the peer, then the end of data and the close the application asked for.
asio::awaitable<void> writer(std::shared_ptr<strelay_stream> s, std::shared_ptr<StreamPump> p) {
  bool shutdown_sent = false;
  for (;;) {
    auto step = next_step(*s, shutdown_sent);
    if (step.ended) {
      // Over (an error, an abort, the node's close): a stream that can still say goodbye
      // does, rather than leaving its peer an abort when the last reference goes.
      if (!p->stream.finished()) co_await p->stream.close(CloseReason::normal);
      co_return;
    }
    if (!step.bytes.empty()) s->changed.notify_all();  // room: a strelay_stream_wait may wait
    if (step.writable) s->node->emit(stream_event(STRELAY_EVENT_STREAM_WRITABLE), {}, {}, s);
    std::error_code error;
    if (!step.bytes.empty()) {
      error = co_await p->stream.write(step.bytes);
      if (!error) {
        std::lock_guard lock(s->mutex);
        s->sent += step.bytes.size();
      }
    } else if (step.shutdown) {
      error = co_await p->stream.shutdown_send();
    } else if (step.close) {
      const auto outcome = co_await p->stream.close(step.reason, step.detail);
      p->update_rtt(*s);
      s->end(status_of(outcome));
      co_return;
    } else {
      co_await p->work.wait();
      continue;
    }
    p->update_rtt(*s);
    if (error) s->end(status_of(error));  // the next step closes
  }
}

}  // namespace

void start_pump(const std::shared_ptr<strelay_stream>& stream, Stream cxx_stream) {
  auto& ioc = *stream->node->ioc;
  auto pump = std::make_shared<StreamPump>(std::move(cxx_stream), ioc.get_executor());
  stream->pump = pump;
  asio::co_spawn(ioc, reader(stream, pump), rethrow);
  asio::co_spawn(ioc, writer(stream, pump), rethrow);
}

void abort_pump(strelay_stream& stream) {
  if (!stream.pump) return;
  stream.pump->stream.abort();
  stream.pump->notify();
  stream.pump.reset();
}

}  // namespace strelay::capi

using namespace strelay::capi;

void strelay_stream::poke() {
  node->post([s = shared_from_this()] {
    if (s->pump) s->pump->notify();
  });
}

void strelay_stream::end(int how) {
  {
    std::lock_guard lock(mutex);
    if (ended) return;
    ended = true;
    status = how;
  }
  changed.notify_all();
  if (pump) {
    pump->notify();  // the other coroutine sees `ended`
    // The coroutines hold their own references: the C++ stream now goes with the last of
    // them, on the loop, never with a handle freed on an application thread.
    pump.reset();
  }
  node->emit(stream_event(STRELAY_EVENT_STREAM_ENDED, how), peer, {}, shared_from_this());
}

int strelay_stream::ready_mask() {
  int mask = 0;
  if (in.size() > in_at || peer_eof || ended) mask |= STRELAY_READABLE;
  if (out.size() < stream_buffer_bytes || ended || shutdown || close_requested) {
    mask |= STRELAY_WRITABLE;
  }
  if (ended) mask |= STRELAY_ENDED;
  return mask;
}

extern "C" {

int64_t strelay_stream_read(strelay_stream* s, void* buffer, size_t size) {
  if (!s || !buffer) return fail(STRELAY_INVALID, "a null argument");
  if (size == 0) return fail(STRELAY_INVALID, "a read of 0 bytes (0 means the end of data)");
  std::unique_lock lock(s->mutex);
  const std::size_t held = s->in.size() - s->in_at;
  if (held > 0) {
    const std::size_t n = std::min(held, size);
    std::memcpy(buffer, s->in.data() + s->in_at, n);
    s->in_at += n;
    s->received += n;
    if (s->in_at == s->in.size()) {
      s->in.clear();
      s->in_at = 0;
    }
    lock.unlock();
    if (held >= stream_buffer_bytes) s->poke();  // the reader may wait for room
    ok();
    return static_cast<int64_t>(n);
  }
  if (s->peer_eof || (s->ended && s->status == STRELAY_OK)) return ok();
  if (s->ended)
    return fail(s->status, "the stream ended: " + std::string(strelay_status_name(s->status)));
  return fail(STRELAY_AGAIN, "nothing to read yet");
}

int64_t strelay_stream_write(strelay_stream* s, const void* bytes, size_t size) {
  if (!s || (!bytes && size > 0)) return fail(STRELAY_INVALID, "a null argument");
  std::unique_lock lock(s->mutex);
  if (s->ended && s->status != STRELAY_OK) {
    return fail(s->status, "the stream ended: " + std::string(strelay_status_name(s->status)));
  }
  if (s->ended || s->shutdown || s->close_requested) {
    return fail(STRELAY_CLOSED, "the stream was shut down or closed for writing");
  }
  const std::size_t room = stream_buffer_bytes - std::min(s->out.size(), stream_buffer_bytes);
  if (room == 0) {
    s->write_blocked = true;
    return fail(STRELAY_AGAIN, "the send buffer is full");
  }
  const std::size_t n = std::min(room, size);
  const bool was_empty = s->out.empty();
  const auto* from = static_cast<const std::uint8_t*>(bytes);
  s->out.insert(s->out.end(), from, from + n);
  lock.unlock();
  if (was_empty && n > 0) s->poke();
  ok();
  return static_cast<int64_t>(n);
}

int strelay_stream_shutdown(strelay_stream* s) {
  if (!s) return fail(STRELAY_INVALID, "a null stream");
  {
    std::lock_guard lock(s->mutex);
    if (s->ended) return s->status == STRELAY_OK ? ok() : fail(s->status, "the stream ended");
    if (s->shutdown) return ok();
    s->shutdown = true;
  }
  s->poke();
  return ok();
}

int strelay_stream_close(strelay_stream* s, int reason, const char* detail) {
  if (!s) return fail(STRELAY_INVALID, "a null stream");
  if (reason < 0 || reason > 11) return fail(STRELAY_INVALID, "a close reason is 0..11");
  {
    std::lock_guard lock(s->mutex);
    if (s->ended || s->close_requested) return ok();
    s->close_requested = true;
    s->close_reason = reason;
    s->close_detail = detail ? std::string(detail).substr(0, 200) : "";
  }
  s->poke();
  return ok();
}

void strelay_stream_free(strelay_stream* s) {
  if (!s) return;
  std::shared_ptr<strelay_stream> keep;
  bool abort = false;
  {
    std::lock_guard lock(s->mutex);
    keep = std::move(s->self);
    abort = !s->ended && !s->close_requested;
  }
  if (abort) {
    s->node->post([keep] {
      abort_pump(*keep);
      keep->end(STRELAY_CLOSED);
    });
  }
}

int strelay_stream_wait(strelay_stream* s, int events, int timeout_ms) {
  if (!s) return fail(STRELAY_INVALID, "a null stream");
  if (timeout_ms != 0 && s->node->on_loop()) {
    return fail(STRELAY_WRONG_THREAD, "a blocking wait from a callback: use timeout 0");
  }
  std::unique_lock lock(s->mutex);
  const auto ready = [&] { return (s->ready_mask() & events) != 0; };
  if (timeout_ms < 0) {
    s->changed.wait(lock, ready);
  } else {
    s->changed.wait_for(lock, std::chrono::milliseconds(timeout_ms), ready);
  }
  ok();
  return s->ready_mask() & events;
}

int strelay_stream_status(strelay_stream* s) {
  if (!s) return fail(STRELAY_INVALID, "a null stream");
  std::lock_guard lock(s->mutex);
  if (!s->ended) return STRELAY_AGAIN;
  return s->status == STRELAY_OK ? ok() : fail(s->status, strelay_status_name(s->status));
}

int strelay_stream_peer(strelay_stream* s, uint8_t out[STRELAY_KEY_BYTES]) {
  if (!s || !out) return fail(STRELAY_INVALID, "a null argument");
  std::copy(s->peer.bytes().begin(), s->peer.bytes().end(), out);
  return ok();
}

int strelay_stream_stats(strelay_stream* s, uint64_t* sent, uint64_t* received, int64_t* rtt_us) {
  if (!s) return fail(STRELAY_INVALID, "a null stream");
  std::lock_guard lock(s->mutex);
  if (sent) *sent = s->sent;
  if (received) *received = s->received;
  if (rtt_us) *rtt_us = s->rtt_us;
  return ok();
}

}  // extern "C"
