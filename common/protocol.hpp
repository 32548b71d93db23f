// Every wire number and every default of strelay, in one place.
//
// Protocol flow (node N, relay R; docs/protocol.md is the full specification):
//
//  0. TCP connect.  N -> R  preamble: "strelay" (7 bytes) || version (1 byte).
//     R answers an unknown version with its own preamble (R's version) and closes.
//     The 8 preamble bytes are the Noise prologue, so a downgrade breaks the handshake.
//  1. N -> R  msg1 = len16 || e                      (N's ephemeral X25519 key)
//  2. R -> N  msg2 = len16 || e || Enc(sig_R)        (ee; R signs ctx_responder || h)
//     N checks sig_R against the Ed25519 key in its ticket; on mismatch it stops here.
//  3. N -> R  msg3 = len16 || Enc(s_N) || Enc(sig_N) || Enc(payload)
//                                                    (N's Ed25519 key; N signs ctx_initiator || h)
//  4. Split(): one ChaChaPoly key per direction; h is the session id.
//  5. Transport: frames = len16 || ChaChaPoly(plaintext), nonces are implicit counters.
//     plaintext = kind (1 byte) || body; kinds are FrameKind below.
//  6. Control (kind = control): Cap'n Proto messages of schema/relay.capnp.
//     Listen -> ListenOk, then IncomingConnection pushes; Connect(L) -> one outcome;
//     Accept(P) -> Connected or NoPending.
//  7. After Connected a tunnel connection is a raw pipe: the relay forwards bytes as they are,
//     and the two nodes run steps 0-5 end to end through it (the end-to-end handshake has its
//     own prologue and signature contexts; see end_to_end_prologue_label below).
//
// Specification constants change the wire; implementation constants are our choices.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <system_error>

namespace strelay {

using namespace std::chrono_literals;

// ---------------------------------------------------------------- specification constants

// Keys and signatures (Ed25519 identities, X25519 ephemerals).
inline constexpr std::size_t key_bytes = 32;        // Ed25519 public key, seed, X25519 key
inline constexpr std::size_t signature_bytes = 64;  // Ed25519 signature
inline constexpr std::size_t hash_bytes = 32;       // SHA-256, the Noise HASHLEN
inline constexpr std::size_t aead_tag_bytes = 16;   // ChaChaPoly tag

// Preamble: sent first by the client; also the Noise prologue.
inline constexpr std::array<std::uint8_t, 7> preamble_magic{'s', 't', 'r', 'e', 'l', 'a', 'y'};
inline constexpr std::uint8_t protocol_version = 1;
inline constexpr std::size_t preamble_bytes = preamble_magic.size() + 1;

// Framing: every handshake message and transport frame is a 2-byte big-endian length + body.
inline constexpr std::size_t length_prefix_bytes = 2;
inline constexpr std::size_t max_frame_bytes = 65535;  // the largest body a u16 can announce
inline constexpr std::size_t max_plaintext_bytes = max_frame_bytes - aead_tag_bytes;  // 65519

// Handshake (docs/protocol.md section 2): Noise XK1 in shape, authenticated by Ed25519 signatures.
// The name is InitializeSymmetric's input (36 bytes, so h starts as its SHA-256).
inline constexpr std::string_view handshake_protocol_name = "Noise_XK1sig_25519_ChaChaPoly_SHA256";
// Each side signs  context || h.  Distinct per role, per layer (hop or end to end, below) and
// per version, so that a signature made here can serve no other role, layer, version or
// purpose. Changing protocol_version changes these.
inline constexpr std::string_view responder_signature_context =
    "strelay v1 handshake: responder signature";
inline constexpr std::string_view initiator_signature_context =
    "strelay v1 handshake: initiator signature";
static_assert(protocol_version == 1, "the signature contexts name the protocol version");
// The end-to-end handshake (node to node inside a tunnel, docs/protocol.md section 5) is the
// same handshake in a separate domain: its prologue is the preamble followed by this label
// (18 bytes, mixed as one MixHash), and it signs with its own contexts. So a relay whose
// identity is also a node's cannot stand in for that node: the hop and end-to-end transcripts
// and signatures never match each other (tests: handshake_attack_test.cpp, "relay-in-the-middle").
inline constexpr std::string_view end_to_end_prologue_label = "end-to-end";
inline constexpr std::string_view end_to_end_responder_signature_context =
    "strelay v1 end-to-end: responder signature";
inline constexpr std::string_view end_to_end_initiator_signature_context =
    "strelay v1 end-to-end: initiator signature";
// Message bodies (without the length prefix). msg1 = e; msg2 = e || Enc(sig);
// msg3 = Enc(s) || Enc(sig) || Enc(payload), where Enc adds one tag.
inline constexpr std::size_t handshake_msg1_bytes = key_bytes;
inline constexpr std::size_t handshake_msg2_bytes = key_bytes + signature_bytes + aead_tag_bytes;
inline constexpr std::size_t handshake_msg3_min_bytes =
    (key_bytes + aead_tag_bytes) + (signature_bytes + aead_tag_bytes) + aead_tag_bytes;  // 144
// The first request rides in msg3's payload; msg3 must fit one length prefix.
inline constexpr std::size_t max_handshake_payload_bytes =
    max_frame_bytes - handshake_msg3_min_bytes;  // 65391
// Noise reserves nonce 2^64-1: a CipherState refuses to use it, so a channel ends before it.
inline constexpr std::uint64_t reserved_nonce = ~std::uint64_t{0};

// Transport plaintext starts with one of these kinds.
enum class FrameKind : std::uint8_t {
  control = 1,  // a Cap'n Proto control message (node <-> relay only)
  data = 2,     // application bytes (end to end only)
  close = 3,    // authenticated close: CloseReason (1 byte) then optional UTF-8 detail
  ping = 4,     // 8-byte opaque token, answered by a pong with the same token
  pong = 5,
};

// Transport plaintext = kind (1 byte) || body, so a body holds at most 65518 bytes.
inline constexpr std::size_t frame_kind_bytes = 1;
inline constexpr std::size_t max_frame_body_bytes = max_plaintext_bytes - frame_kind_bytes;
// The smallest valid transport ciphertext: a kind byte and the tag (17 bytes).
inline constexpr std::size_t min_transport_frame_bytes = frame_kind_bytes + aead_tag_bytes;
// A close body is the reason byte then at most this much UTF-8 detail (for logs, not for code).
inline constexpr std::size_t max_close_detail_bytes = 200;
// A ping or pong body is exactly this opaque token.
inline constexpr std::size_t ping_token_bytes = 8;
// Pings a relay session holds unanswered (its writer blocked on a peer that does not read);
// one more is a protocol error. The keepalive policy keeps one ping in flight.
inline constexpr std::size_t max_pongs_due = 64;
// A relay listener's kernel send queue (SO_SNDBUF; Linux's autotuning would let it grow to
// tcp_wmem's 4 MiB): all a node that stops reading can make the relay hold there, and the point
// where the relay's writer blocks, so max_pongs_due and the write-stall timeout come into play.
inline constexpr std::size_t listener_send_queue_bytes = 64 * 1024;

// Reasons carried by an authenticated close, and counted in metrics and logs.
// `aborted` is never sent: it is what a reader reports for an EOF without a close.
enum class CloseReason : std::uint8_t {
  normal = 0,          // the application is done
  replaced = 1,        // a newer Listen for the same key won
  shutdown = 2,        // the relay is draining
  protocol_error = 3,  // a malformed or unexpected message
  timeout = 4,         // a deadline passed (handshake, first request, half-tunnel)
  dead_peer = 5,       // no keepalive answer in time
  overloaded = 6,      // a resource limit was hit
  rate_limited = 7,    // a rate limit was hit
  not_allowed = 8,     // the key is not on the allowlist / friend list
  stalled = 9,         // the peer stopped reading for longer than the stall limit
  peer_gone = 10,      // the other end of a tunnel went away
  internal = 11,       // a bug; logged with detail locally, never sent with detail
  aborted = 255,       // local only: EOF or reset with no authenticated close
};

// Every reason, in wire order: for name tables, metrics and tests.
inline constexpr std::array<CloseReason, 13> all_close_reasons{
    CloseReason::normal,         CloseReason::replaced,     CloseReason::shutdown,
    CloseReason::protocol_error, CloseReason::timeout,      CloseReason::dead_peer,
    CloseReason::overloaded,     CloseReason::rate_limited, CloseReason::not_allowed,
    CloseReason::stalled,        CloseReason::peer_gone,    CloseReason::internal,
    CloseReason::aborted};

// The one name of each reason, for logs and metrics ("replaced"); "unknown" for a byte that is
// not a reason (a value cast from the wire before validation).
constexpr std::string_view to_string(CloseReason reason) {
  switch (reason) {
    case CloseReason::normal: return "normal";
    case CloseReason::replaced: return "replaced";
    case CloseReason::shutdown: return "shutdown";
    case CloseReason::protocol_error: return "protocol_error";
    case CloseReason::timeout: return "timeout";
    case CloseReason::dead_peer: return "dead_peer";
    case CloseReason::overloaded: return "overloaded";
    case CloseReason::rate_limited: return "rate_limited";
    case CloseReason::not_allowed: return "not_allowed";
    case CloseReason::stalled: return "stalled";
    case CloseReason::peer_gone: return "peer_gone";
    case CloseReason::internal: return "internal";
    case CloseReason::aborted: return "aborted";
  }
  return "unknown";
}

// Who sent a close: the relay of a hop connection, or the peer at the other end of a stream.
enum class CloseOrigin : std::uint8_t { relay, peer };

// The one mapping of a received close to the error a node reports (common/protocol.cpp).
// Reasons that only say "done" (normal, replaced, stalled, internal, and shutdown from a peer)
// are errc::channel_closed; the log names which. The relay's shutdown is
// errc::relay_shutting_down (a listener moves to its other relays; issue 20.1). not_allowed depends
// on who said it: the relay's allowlist (errc::not_allowed) or the peer's friend list
// (errc::not_a_friend).
std::error_code to_error_code(CloseReason reason, CloseOrigin origin);

// Files (Offset-compatible formats; docs/file-formats.md).
inline constexpr std::size_t max_address_bytes = 256;            // a ticket's "host:port", whole
inline constexpr std::size_t offset_legacy_identity_bytes = 85;  // Offset <= 0.1.10 PKCS#8 blob

// ---------------------------------------------------------------- implementation constants
// Each of these is a default that strelay exposes as a flag (see docs/operations.md).

// Absolute deadline from TCP accept to the first request; not an idle timer.
inline constexpr auto handshake_deadline = 10s;
// A frame header announced, its body must follow within this (slowloris on frames).
inline constexpr auto frame_deadline = 10s;
// After answering another version with its preamble, the relay discards what the client still
// sends, for at most this long, before closing: closing with unread bytes would send a reset,
// which can destroy the reply before the client reads it.
inline constexpr auto preamble_reply_linger = 2s;
// A frame body buffer starts at this size and doubles as bytes arrive (never past the announced
// length), so a header announcing 65535 bytes followed by silence costs at most this much.
inline constexpr std::size_t frame_buffer_first_bytes = 4096;
// A channel going idle frees any frame buffer larger than this (10,000 idle listeners must
// stay small); a busy channel keeps its buffers, so bulk transfer does not reallocate.
inline constexpr std::size_t idle_buffer_bytes = 1024;
// Pending handshakes in total, and per source (an IPv4 /32 or an IPv6 /64).
inline constexpr std::size_t max_pending_handshakes = 1024;
inline constexpr std::size_t max_pending_per_source = 8;
// ... and per prefix (IPv6 /48, IPv4 /24 when grouped; an IPv6 /56 gets half): a /56 holds 256
// /64s, which at 8 each would be 2,048, more than the whole table (strelay/sources.hpp).
inline constexpr std::size_t max_pending_per_prefix = 32;
// Under pressure the handshake deadline shortens, down to this at a full pending table: three
// round trips on a slow mobile link take well under a second.
inline constexpr auto min_handshake_deadline = 2s;
// Open connections per source (/32, /64) and per prefix: a household or office of nodes
// behind one address, each holding a listener and a few tunnels. 62 sources are needed to
// fill the default table of 16,000, and then fair share cuts the heaviest first.
inline constexpr std::size_t max_connections_per_source = 256;
inline constexpr std::size_t max_connections_per_prefix = 1024;
// Established connections told Close{overloaded} by fair share and not yet closed; the
// descriptor budget keeps this many free (strelay/limits.hpp, plan_descriptors).
inline constexpr std::size_t max_evicting = 16;
// Descriptors kept free beyond those counted (strelay/limits.hpp, plan_descriptors): one accepted
// socket awaiting refusal per listening socket, a /proc/self/fd read, a config file on SIGHUP,
// and the connections fair share has told to go but that have not closed yet.
inline constexpr std::size_t descriptor_margin = 8 + max_evicting;
// Handshake attempts per source: a token bucket.
inline constexpr double handshake_rate_per_source = 20.0;  // tokens per second
inline constexpr double handshake_burst_per_source = 5.0;
// Sources (IPv4 /32, IPv6 /64) tracked for admission; idle ones are evicted first, and a new
// source beyond this is refused: at 20/s burst 5 a source's entry is idle again within 0.25 s.
inline constexpr std::size_t max_admission_sources = 16384;
// Total connections, as a share of RLIMIT_NOFILE after raising the soft limit to the hard one.
inline constexpr double connections_share_of_nofile = 0.8;
// Descriptors of one spliced tunnel beyond its two sockets: a pipe (two ends) per direction.
inline constexpr std::size_t tunnel_pipe_fds = 4;
// A Connect waits this long for the listener's Accept.
inline constexpr auto half_tunnel_ttl = 30s;
// Connect requests per identity: a token bucket.
inline constexpr double connect_rate_per_identity = 60.0 / 60.0;  // 60 per minute
inline constexpr double connect_burst_per_identity = 20.0;
// Pending half-tunnels in total: a few hundred bytes each, so a few tens of MiB at the cap.
inline constexpr std::size_t max_half_tunnels = 65536;
// Pending connects from one identity to one listener: a retrying node needs a few, not more.
inline constexpr std::size_t max_half_tunnels_per_pair = 8;
// Identities with a connect-rate bucket; idle (full) buckets are evicted first, and a new
// identity beyond this is refused with Overloaded.
inline constexpr std::size_t max_rate_limited_identities = 65536;
// Per source (/32, /64; each prefix /24, /48 gets 4x): listeners and pending connects. Identities
// cost nothing, so without these one address could fill the pairing table with fresh keys.
inline constexpr std::size_t max_listeners_per_source = 64;
inline constexpr std::size_t max_half_tunnels_per_source = 64;
// Pending connects to one listener key, from anyone: it accepts each, so more than this
// waiting at once is a flood aimed at it.
inline constexpr std::size_t max_half_tunnels_per_target = 64;
// Connect requests per source (/32, /64), across all its identities: a token bucket.
inline constexpr double connect_rate_per_source = 600.0 / 60.0;  // 600 per minute
inline constexpr double connect_burst_per_source = 100.0;
// Control frames (pings, pongs, RejectConnection) per authenticated connection: a token
// bucket; past it the connection gets Close{rate_limited}. The keepalive needs one ping per
// 15 s; a listener rejects a burst of connectors at most.
inline constexpr double control_rate_per_connection = 20.0;  // frames per second
inline constexpr double control_burst_per_connection = 100.0;
// Topics (docs/protocol.md 4.9), per listening connection: how many it may join, how fast it
// may join and leave, how many introductions it may receive per second (a newcomer's join makes
// one for it and one for each member it meets); per topic: members, and how many of the newest
// a newcomer meets.
inline constexpr std::size_t max_topics_per_node = 16;
inline constexpr std::size_t max_members_per_topic = 1024;
inline constexpr std::size_t max_introductions_per_join = 32;
inline constexpr double topic_churn_rate = 10.0;  // joins and leaves per second
inline constexpr double topic_churn_burst = 20.0;
inline constexpr double introduction_rate = 32.0;  // introductions received per second
inline constexpr double introduction_burst = 64.0;
// User-space buffering per tunnel direction (backpressure beyond it; never dropped).
inline constexpr std::size_t tunnel_buffer_bytes = 256 * 1024;
// A tunnel direction that always finds bytes waiting yields its worker after this many bytes,
// so one bulk transfer cannot starve the other tunnels and sessions of that worker.
inline constexpr std::size_t tunnel_yield_bytes = 256 * 1024;
// A peer that accepts no bytes for this long is declared stalled.
inline constexpr auto write_stall_timeout = 30s;
// A stalled receiver's clock restarts only when it has taken this much (or everything held):
// a minimum rate of 16 KiB per write-stall period (546 bytes/s at 30 s), not any single byte.
inline constexpr std::size_t stall_progress_bytes = 16 * 1024;
// Keepalive: a ping after this much silence; the peer is dead after this much silence.
inline constexpr auto keepalive_interval = 15s;
inline constexpr auto dead_peer_timeout = 45s;
// Control messages: size and Cap'n Proto reader limits (checked before any allocation).
inline constexpr std::size_t max_control_message_bytes = 4096;
inline constexpr std::uint64_t capnp_traversal_limit_words = 2048;
inline constexpr int capnp_nesting_limit = 8;
// SIGTERM: how long running tunnels get to finish (sessions get Close{shutdown} at once); long
// enough for an ordinary transfer, well within systemd's default 90 s stop timeout.
inline constexpr auto drain_deadline = 30s;
// Operability (common/log, strelay/http, strelay/metrics).
// Log lines per event name: a token bucket, so an EMFILE storm or a flood of bad handshakes
// cannot fill the disk, while a burst after a quiet spell is still shown in full.
inline constexpr double log_rate_per_event = 10.0;  // lines per second
inline constexpr double log_burst_per_event = 50.0;
// Suppressed lines are summarised (event, count) at least this often, so none go unreported.
inline constexpr auto log_summary_interval = 10s;
// The relay hands freed heap pages back to the system at most this often, when a burst is over
// (MemoryTrimPolicy, checked every log_summary_interval): its RSS then falls back towards the
// idle size instead of staying at the peak. A trim in the middle of a burst's ending delays
// the next one by this much, so a burst's memory is back within about 40 s of its end.
inline constexpr auto memory_trim_interval = 30s;
// Distinct event names with their own bucket; more share one bucket (names come from code).
inline constexpr std::size_t log_max_events = 256;
// A string value longer than this is cut: a peer's close detail cannot inflate the logs.
inline constexpr std::size_t log_max_value_bytes = 512;
// HTTP endpoint: only small GETs are served, so requests are capped far below Beast's defaults.
inline constexpr std::size_t http_max_header_bytes = 8 * 1024;
inline constexpr std::size_t http_max_body_bytes = 1024;
// Each request (and each idle keep-alive wait) must arrive within this: slowloris on HTTP.
inline constexpr auto http_request_deadline = 10s;
// Concurrent HTTP connections; more are answered 503 and closed, so scrapers cannot starve fds.
inline constexpr std::size_t http_max_connections = 64;
// ... of which one source address may hold; past it the source's oldest idle keep-alive
// connection is closed, and a new one beyond the cap refused with 503 (/healthz: answered).
inline constexpr std::size_t http_max_per_source = 8;
// Requests per keep-alive connection before the server closes it.
inline constexpr std::size_t http_max_requests_per_connection = 100;
// The status page's live chart: one sample every 5 s, the last 10 minutes.
inline constexpr auto status_sample_interval = 5s;
inline constexpr std::size_t status_sample_count = 120;
// Allowlist files: bounded before reading (100,000 keys at ~60 bytes a line fit in 8 MiB).
inline constexpr std::size_t max_allowlist_file_bytes = 8 * 1024 * 1024;
inline constexpr std::size_t max_allowlist_line_bytes = 1024;
// Files: read limits, checked on fstat before any byte is read (an identity file is ~60 bytes).
inline constexpr std::size_t max_identity_file_bytes = 4096;
inline constexpr std::size_t max_ticket_file_bytes = 64 * 1024;
// A friend ticket names a few relays for redundancy; more is a mistake or an attack.
inline constexpr std::size_t max_friend_ticket_relays = 16;
// QR codes: each module is this many pixels in a PNG, and ISO 18004 asks for a 4-module margin.
inline constexpr int qr_png_module_pixels = 8;
inline constexpr int qr_quiet_zone_modules = 4;

// Carriers (strelay/carrier, front, websocket, web_root; docs/protocol.md, "Carriers").
// The WebSocket endpoint's default path on the relay port (--websocket-path).
inline constexpr std::string_view websocket_default_path = "/strelay";
// The HTTP request before an upgrade (request line and headers): far below Beast's 8 KiB default
// is not possible for browsers (cookies), so 8 KiB, answered 431 beyond.
inline constexpr std::size_t upgrade_max_request_bytes = 8 * 1024;
// One WebSocket message (boundaries mean nothing; the bridge forwards a message as it arrives):
// a node sends a frame or a few per message, so 1 MiB is generous; beyond it, close 1009.
inline constexpr std::size_t websocket_max_message_bytes = 1024 * 1024;
// Each direction of a WebSocket bridge copies through a buffer of this size, and its socketpair
// holds at most about as much again (SO_SNDBUF): the bound behind its backpressure.
inline constexpr std::size_t websocket_bridge_buffer_bytes = 64 * 1024;
// A bridge that closes its WebSocket waits this long for the node's close reply, then drops it.
inline constexpr auto websocket_close_linger = 5s;
// A PROXY protocol header: v1 is at most 107 bytes; v2 may carry TLVs, capped here.
inline constexpr std::size_t proxy_header_max_bytes = 536;
// Static files under --web-root: a file larger than this is refused (413 would be wrong: 403).
inline constexpr std::size_t web_root_max_file_bytes = 8 * 1024 * 1024;

// Node side (common/backoff, relay_link, stream, node; docs/node-library.md).
// Reconnection: full-jitter exponential backoff. The first retry comes within 1 s; the cap
// bounds how long a listener stays away from a relay that is back (30 s, as a phone can afford).
inline constexpr auto node_backoff_initial = 1s;
inline constexpr auto node_backoff_cap = 30s;
// A listen that stayed up this long resets the backoff: a relay restart after a long quiet spell
// is retried at once, but two devices of one identity replacing each other slow down to the cap.
inline constexpr auto node_backoff_stable_after = 10s;
// A refusal the relay will repeat (not allowed, another key or protocol version, not a relay at
// all): a listener tries that relay again only after this long, not at the backoff's pace.
inline constexpr auto node_permanent_refusal_retry = 10min;
// One relay attempt (DNS, TCP connect and the relay handshake), before trying the next relay.
inline constexpr auto node_connect_timeout = 10s;
// A connector's wait for its outcome: the relay answers Refused{timeout} at the half-tunnel TTL,
// so this bites only when the relay falls silent.
inline constexpr auto node_outcome_timeout = half_tunnel_ttl + 5s;
// Accepted streams waiting for the application's accept(); beyond this, incoming connects are
// left pending at the relay (their TTL ends them), never accepted into unbounded memory.
inline constexpr std::size_t node_max_queued_streams = 16;
// End-to-end stream: received bytes buffered for the application before the node stops reading
// the tunnel (backpressure through TCP and the relay, never dropping); at least one frame body.
inline constexpr std::size_t stream_receive_buffer_bytes = 256 * 1024;
// After sending its close, a stream reads (and discards) until the peer closes too, for at most
// this long, so its own close does not become a reset that destroys the peer's last frames.
inline constexpr auto stream_close_linger = 2s;

}  // namespace strelay
