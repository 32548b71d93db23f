// Test support for the adversarial suite (../shared/design/adversarial-tests.md): a node that
// speaks the relay protocol over a plain blocking socket, byte by byte under the test's control,
// so it can break the protocol anywhere a real attacker could.
//
//  - HostileClient: the handshake written out step by step on the Noise core (SymmetricState),
//    not through InitiatorHandshake, so msg3 can carry any identity bytes and any signature; then
//    the transport (sealed frames, raw frames, hostile Cap'n Proto in an authenticated frame).
//    Hooks (Hooks below) corrupt byte N of message K, drip the bytes at a rate, or stall after
//    K bytes. It ends with an abrupt reset (SO_LINGER 0), a FIN, or a close.
//  - hostile_capnp(): the hostile Cap'n Proto messages of the document, by name.
//  - SecretLedger: every secret a test knows (node seeds, ephemeral secrets, DH outputs, the
//    relay's seed and signing key), in the forms a log could hold them, for the check that no
//    secret is logged (WatchedRelay::check_clean scans the relay's log for every one).
//
// Message numbers for the hooks: 0 the preamble, 1 msg1, 2 msg2 (received: corrupted before it
// is checked), 3 msg3, then 4, 5, ... each transport frame or raw send in order. Byte N counts
// the bytes of that message as they go on the wire, the 2-byte length prefix included.
//
// Not thread-safe; one client per thread. Every wait has a limit.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "common/keys.hpp"
#include "common/messages.hpp"
#include "common/noise.hpp"
#include "common/protocol.hpp"
#include "common/transport.hpp"
#include "support/relay_client.hpp"

namespace strelay::test {

// ---------------------------------------------------------------- secrets a log must not hold

class SecretLedger {
 public:
  // Records `bytes` under `label` (e.g. "node seed"); the check looks for its lowercase and
  // uppercase hex, its base64url and its standard base64, and for the first half of each.
  static void add(std::string_view label, std::span<const std::uint8_t> bytes);
  struct Entry {
    std::string label;
    std::vector<std::string> forms;
  };
  static std::vector<Entry> entries();
  // The label of the first secret found in `text`, or empty.
  static std::string find_in(const std::string& text);
  static std::size_t size();

 private:
  static std::mutex mutex_;
  static std::vector<Entry> entries_;
};

// ---------------------------------------------------------------- hooks

struct Hooks {
  struct Corrupt {
    int message = 1;           // see the header comment
    std::size_t byte = 0;      // within that message on the wire, length prefix included
    std::uint8_t mask = 0x01;  // XORed into the byte
  };
  struct Drip {
    std::size_t bytes = 1;  // per step
    std::chrono::milliseconds every{100};
  };
  std::optional<Corrupt> corrupt;
  std::optional<Drip> drip;
  // After this many bytes in total (preamble included) nothing more is sent, ever: sends
  // report success while the bytes are silently withheld (a stalled peer).
  std::optional<std::size_t> stall_after;
};

// How msg3 authenticates the node (the cases of "Bad keys" and "Replay and splice").
enum class SignatureForgery {
  none,            // a correct signature by the identity, over the initiator context
  responder_role,  // signed over the responder's context (a signature for the other role)
  other_version,   // signed over the context of protocol version 2
  all_zero,        // 64 zero bytes
  malleated,       // S + L: the same signature made non-canonical
};

struct Msg3Options {
  // The identity bytes sent as s; default: the client's own public key.
  std::optional<std::array<std::uint8_t, key_bytes>> identity_bytes;
  SignatureForgery forgery = SignatureForgery::none;
  // An identity that signs instead of the client's (a man in the middle's own key).
  const Identity* signer = nullptr;
};

// ---------------------------------------------------------------- the client

class HostileClient {
 public:
  using ms = std::chrono::milliseconds;

  // Connects from `source` (an address in 127.0.0.0/8). ok() is false when that failed.
  explicit HostileClient(const RelayAddress& relay, Hooks hooks = {},
                         std::string source = "127.0.0.1");
  ~HostileClient();
  HostileClient(const HostileClient&) = delete;
  HostileClient& operator=(const HostileClient&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // The node's identity (a fresh one unless set). REQUIREs that it was not released.
  const Identity& identity() const;
  const PublicKey& public_key() const { return public_key_; }
  void set_identity(Identity identity);
  // Frees the identity once the handshake is done: each Identity holds sodium_malloc'd pages
  // (guard pages: several kernel mappings), too many for thousands of idle clients.
  void release_identity() { identity_.reset(); }
  Hooks& hooks() { return hooks_; }
  std::size_t bytes_sent() const { return sent_total_; }

  // ---- the handshake, step by step (each send is message 0, 1, 3 for the hooks)
  // The preamble and msg1 in one write (two messages for the hooks). msg1_override replaces
  // the ephemeral public key (an all-zero or low-order key); the bytes sent are returned.
  std::vector<std::uint8_t> send_preamble_and_msg1(
      std::optional<std::array<std::uint8_t, key_bytes>> msg1_override = {});
  // Reads msg2 (length-checked) within `limit`; nullopt when the relay closed or said nothing.
  std::optional<std::vector<std::uint8_t>> read_msg2(ms limit = ms(5000));
  // Checks msg2 against the pinned relay key; errc::relay_identity_mismatch when it fails.
  std::error_code consume_msg2(std::span<const std::uint8_t> body);
  // Builds msg3 (with `payload`, the first request) as Msg3Options says, sends it, and sets up
  // the transport. Returns the msg3 body sent.
  std::vector<std::uint8_t> send_msg3(std::span<const std::uint8_t> payload,
                                      const Msg3Options& options = {});
  // All of it with `request` as the first request: true when msg2 verified and msg3 went out.
  bool handshake(const NodeMessage& request, ms limit = ms(5000));
  bool handshake_with_payload(std::span<const std::uint8_t> payload, ms limit = ms(5000));

  // ---- transport (each is the next message for the hooks)
  // A sealed frame of `kind` with `body` (no check of the body's shape).
  bool send_frame(FrameKind kind, std::span<const std::uint8_t> body);
  // The sealed bytes of the next frame, without sending them (for swaps, duplicates, drops).
  std::vector<std::uint8_t> seal_next(FrameKind kind, std::span<const std::uint8_t> body);
  // Any bytes, as they are (hooks apply).
  bool send_raw(std::span<const std::uint8_t> bytes);
  // A ping with an 8-byte token.
  bool send_ping(std::uint64_t token);
  // `count` pings with tokens first, first + 1, ..., sealed into one buffer and sent with one
  // write (a flood that arrives faster than pongs can be written back).
  bool send_pings(std::uint64_t first, std::size_t count);

  // What came back from the relay.
  struct Reply {
    enum class What { frame, closed, eof, timeout, failed } what = What::timeout;
    FrameKind kind = FrameKind::data;
    std::vector<std::uint8_t> body;
    std::optional<RelayMessage> message;  // a decoded control frame
    CloseReason close_reason = CloseReason::normal;
  };
  // The next frame within `limit`, opened. Pings are answered and skipped when answer_pings.
  Reply receive(ms limit = ms(5000), bool answer_pings = true);
  // Skips pings and pongs; the next control message (or the end).
  Reply next_message(ms limit = ms(5000));
  // True when the relay closes the connection (EOF or reset) within `limit`; bytes that
  // arrive meanwhile are discarded and counted in received().
  bool wait_closed(ms limit);
  std::size_t received() const { return received_total_; }

  // ---- ends
  void reset();  // SO_LINGER 0, then close: the relay sees a reset
  void fin();    // shutdown(SHUT_WR): the relay sees EOF, we can still read
  void close();

 private:
  bool write_message(std::span<const std::uint8_t> bytes);
  bool write_all(std::span<const std::uint8_t> bytes);
  // Reads exactly out.size() bytes by `until`; false on EOF, reset or timeout (timed_out_ says).
  bool read_exact(std::span<std::uint8_t> out, std::chrono::steady_clock::time_point until);

  RelayAddress relay_;
  Hooks hooks_;
  std::optional<Identity> identity_;
  PublicKey public_key_;
  int fd_ = -1;
  int next_message_ = 0;
  std::size_t sent_total_ = 0;
  std::size_t received_total_ = 0;
  bool timed_out_ = false;
  std::optional<DhKeyPair> e_;
  std::optional<SymmetricState> symmetric_;
  std::optional<Transport> transport_;
};

// True when `r` is a decoded control frame holding the message T.
template <class T>
bool is(const HostileClient::Reply& r) {
  return r.message && std::holds_alternative<T>(*r.message);
}

// ---------------------------------------------------------------- hostile Cap'n Proto

// The hostile control messages of "Hostile Cap'n Proto in an authenticated frame", each a
// complete flat array: random_bytes, segment_count_ffffffff, out_of_range_pointer,
// deep_nesting (100 levels), zero_size_list (2^29 - 1 Void elements), trailing_bytes
// (a valid Listen followed by one more word).
std::vector<std::string> hostile_capnp_names();
std::vector<std::uint8_t> hostile_capnp(std::string_view name);

// A decent first request, for tests that need the hostile part later.
std::vector<std::uint8_t> listen_payload();

// strelay flags for the adversarial tests: the handshake rate and the per-source pending cap out
// of the way (the tests about those limits set their own), then `extra`.
std::vector<std::string> adversarial_flags(std::vector<std::string> extra = {});

// The relay ended the connection: an authenticated close with `reason`, or (when `or_eof`) an
// EOF or reset without one.
bool ended_with(const HostileClient::Reply& reply, CloseReason reason, bool or_eof = true);

}  // namespace strelay::test
