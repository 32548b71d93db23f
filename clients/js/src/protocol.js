// Every wire number and default of the JavaScript library, mirroring common/protocol.hpp.
// Specification constants change the wire; implementation constants are our choices.

// ------------------------------------------------------------- specification constants
export const key_bytes = 32;        // Ed25519 public key, seed, X25519 key
export const signature_bytes = 64;  // Ed25519 signature
export const hash_bytes = 32;       // SHA-256, the Noise HASHLEN
export const aead_tag_bytes = 16;   // ChaChaPoly tag

// "strelay" || version: sent first by the client, and the Noise prologue.
export const preamble_magic = new TextEncoder().encode('strelay');
export const protocol_version = 1;
export const preamble_bytes = preamble_magic.length + 1;

export const length_prefix_bytes = 2;
export const max_frame_bytes = 65535;
export const max_plaintext_bytes = max_frame_bytes - aead_tag_bytes;  // 65519

export const handshake_protocol_name = 'Noise_XK1sig_25519_ChaChaPoly_SHA256';

// A handshake's domain: the hop (node to relay) or end to end (node to node, inside a tunnel).
// Each has its own prologue suffix and signature contexts, so a signature or transcript made
// in one can never pass in the other (docs/protocol.md 2.4 and section 5).
export const hop_domain = Object.freeze({
  name: 'hop',
  prologue_suffix: new Uint8Array(0),
  responder_context: 'strelay v1 handshake: responder signature',
  initiator_context: 'strelay v1 handshake: initiator signature',
});
export const end_to_end_domain = Object.freeze({
  name: 'end-to-end',
  prologue_suffix: new TextEncoder().encode('end-to-end'),
  responder_context: 'strelay v1 end-to-end: responder signature',
  initiator_context: 'strelay v1 end-to-end: initiator signature',
});

export const handshake_msg1_bytes = key_bytes;
export const handshake_msg2_bytes = key_bytes + signature_bytes + aead_tag_bytes;  // 112
export const handshake_msg3_min_bytes =
    (key_bytes + aead_tag_bytes) + (signature_bytes + aead_tag_bytes) + aead_tag_bytes;  // 144
export const max_handshake_payload_bytes = max_frame_bytes - handshake_msg3_min_bytes;

// Noise reserves nonce 2^64-1.
export const reserved_nonce = 0xffffffffffffffffn;

export const FrameKind = Object.freeze({ control: 1, data: 2, close: 3, ping: 4, pong: 5 });
export const frame_kind_bytes = 1;
export const max_frame_body_bytes = max_plaintext_bytes - frame_kind_bytes;  // 65518
export const min_transport_frame_bytes = frame_kind_bytes + aead_tag_bytes;  // 17
export const max_close_detail_bytes = 200;
export const ping_token_bytes = 8;

export const CloseReason = Object.freeze({
  normal: 0, replaced: 1, shutdown: 2, protocol_error: 3, timeout: 4, dead_peer: 5,
  overloaded: 6, rate_limited: 7, not_allowed: 8, stalled: 9, peer_gone: 10, internal: 11,
  aborted: 255,  // never sent: what a reader reports for an EOF without a close
});
export const close_reason_names = Object.freeze(
    Object.fromEntries(Object.entries(CloseReason).map(([name, value]) => [value, name])));

export const max_address_bytes = 256;
export const offset_legacy_identity_bytes = 85;
export const max_control_message_bytes = 4096;
export const capnp_traversal_limit_words = 2048;
export const capnp_nesting_limit = 8;
export const max_identity_file_bytes = 4096;
export const max_ticket_file_bytes = 64 * 1024;
export const max_friend_ticket_relays = 16;
export const max_file_json_depth = 3;

// ------------------------------------------------------------- implementation constants (ms)
export const handshake_deadline_ms = 10_000;
export const keepalive_interval_ms = 15_000;
export const dead_peer_timeout_ms = 45_000;
export const half_tunnel_ttl_ms = 30_000;
export const node_backoff_initial_ms = 1_000;
export const node_backoff_cap_ms = 30_000;
export const node_backoff_stable_after_ms = 10_000;
export const node_connect_timeout_ms = 10_000;
export const node_outcome_timeout_ms = half_tunnel_ttl_ms + 5_000;
export const node_max_queued_streams = 16;
// Received bytes buffered for the application before the stream stops reading its carrier.
export const stream_receive_buffer_bytes = 256 * 1024;
// Bytes a stream lets its carrier hold unsent before write() waits (backpressure).
export const stream_send_buffer_bytes = 256 * 1024;
export const stream_close_linger_ms = 2_000;
export const write_stall_timeout_ms = 30_000;
// The default WebSocket path of a relay (strelay --websocket-path).
export const default_websocket_path = '/strelay';
