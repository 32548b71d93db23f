// A randomized model of two StreamStates talking through an in-memory tunnel: random writes,
// reads, half-closes, pings and the passing of time, in random order. Checked against the
// plainest reference there is: what one side's application wrote is what the other side's
// application reads, in order, with the end of data exactly at its end; a live peer is never
// declared gone; a silent one is, exactly at the dead-peer timeout; and two sides that finish
// properly both end clean.
#include <doctest/doctest.h>

#include <algorithm>
#include <deque>
#include <optional>
#include <random>
#include <vector>

#include "common/errors.hpp"
#include "common/stream_state.hpp"

using namespace strelay;
using namespace std::chrono_literals;

namespace {

using Kind = StreamState::WriterStep::Kind;
using TimePoint = StreamState::TimePoint;

struct Frame {
  FrameKind kind = FrameKind::data;
  std::vector<std::uint8_t> body;
  std::optional<CloseReason> close;  // a close frame instead
};

// One side: its state, its application, and what it sent.
struct Side {
  explicit Side(TimePoint now, const StreamConfig& config) : state(now, config) {}
  StreamState state;
  std::vector<std::uint8_t> app_written;  // bytes of completed writes, in order
  std::vector<std::uint8_t> writing;      // the write in progress (kept alive for the state)
  bool write_busy = false;
  bool shut = false;                   // end of data requested
  std::vector<std::uint8_t> app_read;  // what the application read
  bool read_eof = false;
  bool finished = false;   // the writer ended (its close is on the wire)
  std::deque<Frame> out;   // the tunnel towards the other side
  TimePoint last_heard{};  // the last frame from the other side
};

class Model {
 public:
  Model(std::uint64_t seed, StreamConfig config)
      : rng_(seed), config_(config), a_(now_, config), b_(now_, config) {}

  // One random step by either side.
  void step() {
    const int which = pick(0, 1);
    Side& self = which == 0 ? a_ : b_;
    Side& other = which == 0 ? b_ : a_;
    switch (pick(0, 6)) {
      case 0: write(self); break;
      case 1: poll_write(self); break;
      case 2:
        if (pick(0, 30) == 0) end_of_data(self);
        break;
      case 3: read(self, other); break;
      case 4: pump_writer(self); break;
      case 5: deliver(other, self); break;  // self receives what other sent
      case 6: now_ += std::chrono::milliseconds(pick(0, 50)); break;
    }
    check(a_);
    check(b_);
  }

  // Both applications finish politely; both streams must end clean with every byte delivered.
  void finish_cleanly() {
    for (int i = 0; i < 100000 && !(a_.state.terminated() && b_.state.terminated()); ++i) {
      for (Side* s : {&a_, &b_}) {
        poll_write(*s);
        if (!s->write_busy && !s->shut) end_of_data(*s);
        if (s->shut && s->read_eof && s->state.end_of_data_result() && !s->finished) {
          s->state.request_close(CloseReason::normal, {});
        }
        read(*s, s == &a_ ? b_ : a_);
        pump_writer(*s);
      }
      deliver(a_, b_);
      deliver(b_, a_);
      terminate_if_done(a_, b_);
      terminate_if_done(b_, a_);
      check(a_);
      check(b_);
    }
    REQUIRE(a_.state.terminated());
    REQUIRE(b_.state.terminated());
    CHECK(a_.state.outcome() == std::error_code{});
    CHECK(b_.state.outcome() == std::error_code{});
    CHECK(b_.app_read == a_.app_written);
    CHECK(a_.app_read == b_.app_written);
  }

  // B falls silent: A must declare it gone exactly dead_peer_timeout after it last heard it.
  void silence_b() {
    for (int i = 0; i < 100000 && !a_.state.failure(); ++i) {
      read(a_, b_);  // A's application keeps reading: soon no full buffer counts as life
      const auto before = now_;
      pump_writer(a_);
      const auto heard = a_.last_heard;
      if (a_.state.failure()) {
        CHECK(a_.state.failure() == errc::peer_gone);
        CHECK(before >= heard + config_.dead_peer_timeout);
        CHECK(before < heard + config_.dead_peer_timeout + 200ms);
        return;
      }
      CHECK(before < heard + config_.dead_peer_timeout);
      now_ += std::chrono::milliseconds(pick(1, 200));
    }
    FAIL("a silent peer was never declared gone");
  }

  Side& a() { return a_; }

 private:
  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  void write(Side& s) {
    if (s.write_busy || s.shut || s.finished) return;
    const int size =
        pick(0, 10) == 0 ? pick(1, 3 * static_cast<int>(max_frame_body_bytes)) : pick(1, 300);
    s.writing.resize(static_cast<std::size_t>(size));
    for (auto& byte : s.writing) byte = static_cast<std::uint8_t>(pick(0, 255));
    const auto done = s.state.begin_write(s.writing);
    if (!done)
      s.write_busy = true;
    else
      CHECK_FALSE(*done);  // nothing ended this side's sending in a friendly run
  }

  void poll_write(Side& s) {
    if (!s.write_busy) return;
    const auto result = s.state.write_result();
    if (!result) return;
    REQUIRE_FALSE(*result);
    s.app_written.insert(s.app_written.end(), s.writing.begin(), s.writing.end());
    s.write_busy = false;
  }

  void end_of_data(Side& s) {
    if (s.write_busy || s.shut) return;
    s.shut = true;
    const auto result = s.state.begin_end_of_data();
    if (result) CHECK_FALSE(*result);
  }

  // The reference: the bytes `s` reads continue what `from` offered (its completed writes,
  // then the one in progress), in order; the end of data comes only after all of them.
  void read(Side& s, const Side& from) {
    std::vector<std::uint8_t> buffer(static_cast<std::size_t>(pick(1, 100000)));
    const auto result = s.state.try_read(buffer);
    if (!result) return;
    REQUIRE_FALSE(result->error);
    if (result->eof()) {
      CHECK(from.shut);
      CHECK(s.app_read.size() == from.app_written.size());
      s.read_eof = true;
      return;
    }
    const std::size_t written = from.app_written.size();
    bool same = true;
    for (std::size_t i = 0; i < result->bytes && same; ++i) {
      const std::size_t at = s.app_read.size() + i;
      if (at >= written && !(from.write_busy && at - written < from.writing.size())) {
        same = false;  // more than was ever offered
      } else {
        same = buffer[i] == (at < written ? from.app_written[at] : from.writing[at - written]);
      }
    }
    REQUIRE_MESSAGE(same, "the bytes read are not the ones written, in order");
    s.app_read.insert(s.app_read.end(), buffer.begin(),
                      buffer.begin() + static_cast<std::ptrdiff_t>(result->bytes));
  }

  void pump_writer(Side& s) {
    if (s.finished || s.state.terminated()) return;
    // The rule under test: a reader held back by a full buffer has a live peer.
    if (!s.state.wants_frame()) s.last_heard = now_;
    const auto step = s.state.writer_step(now_);
    if (step.kind == Kind::wait) {
      CHECK(step.until > now_);  // nothing due now means a later wake-up
      return;
    }
    if (step.kind == Kind::finish) {
      const auto plan = s.state.finish();
      if (plan.send_close) s.out.push_back({FrameKind::close, {}, plan.reason});
      s.finished = true;
      return;
    }
    s.out.push_back({step.frame, {step.body.begin(), step.body.end()}, std::nullopt});
    s.state.on_sent({});
  }

  // `to` receives one frame that `from` sent, if its reader wants one.
  void deliver(Side& from, Side& to) {
    if (from.out.empty() || !to.state.wants_frame()) return;
    Frame frame = std::move(from.out.front());
    from.out.pop_front();
    to.last_heard = now_;
    if (frame.close) {
      to.state.on_receive_end(errc::channel_closed, *frame.close);
      return;
    }
    const auto result = to.state.on_frame(frame.kind, frame.body, now_);
    REQUIRE(result.keep_reading);
  }

  void terminate_if_done(Side& s, Side& other) {
    // The driver terminates after its close went out and the peer's end arrived.
    if (s.finished && other.finished && other.out.empty() && !s.state.terminated()) {
      s.state.on_terminated();
    }
  }

  // Nothing goes wrong between two live, friendly peers: no failure on either side, ever.
  static void check(const Side& side) { REQUIRE_FALSE(side.state.failure()); }

  std::mt19937_64 rng_;
  StreamConfig config_;
  TimePoint now_{};
  Side a_;
  Side b_;
};

StreamConfig small_config() {
  StreamConfig config;
  config.keepalive_interval = 1s;
  config.dead_peer_timeout = 3s;
  config.receive_buffer_bytes = 1;  // one frame body: backpressure is exercised all the time
  return config;
}

}  // namespace

TEST_CASE("model: two streams in random order deliver every byte in order and end clean") {
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    CAPTURE(seed);
    Model model(seed, small_config());
    for (int i = 0; i < 3000; ++i) model.step();
    model.finish_cleanly();
  }
}

TEST_CASE("model: a peer that falls silent is gone exactly at the dead-peer timeout") {
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    CAPTURE(seed);
    Model model(seed, small_config());
    for (int i = 0; i < 500; ++i) model.step();
    model.silence_b();
  }
}
