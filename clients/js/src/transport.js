// Transport frames (docs/protocol.md 3), sans-io: seal a kind and body into a frame, open a
// frame's ciphertext into a kind and body, with the rules of 3.3 to 3.6. Nonces are implicit
// counters (CipherState); the associated data is empty.
import {
  FrameKind, CloseReason, close_reason_names, max_frame_body_bytes, min_transport_frame_bytes,
  max_frame_bytes, max_close_detail_bytes, ping_token_bytes, frame_kind_bytes,
} from './protocol.js';
import { with_length_prefix } from './frame.js';
import { StrelayError } from './errors.js';
import { concat } from './noise.js';

const empty = new Uint8Array(0);
const strict_utf8 = new TextDecoder('utf-8', { fatal: true });

// A close body: the reason, then the detail cut to 200 bytes at a character boundary.
export function close_body(reason, detail = '') {
  let bytes = new TextEncoder().encode(detail);
  if (bytes.length > max_close_detail_bytes) {
    let end = max_close_detail_bytes;
    while (end > 0 && (bytes[end] & 0xc0) === 0x80) --end;  // not inside a character
    bytes = bytes.subarray(0, end);
  }
  return concat(Uint8Array.of(reason), bytes);
}

function protocol_error(why) {
  return new StrelayError('protocol_error', why);
}

// Checks a body for its kind; returns the message {kind, body, close_reason?, detail?}.
function checked_message(kind, body) {
  switch (kind) {
    case FrameKind.control:
    case FrameKind.data:
      return { kind, body };
    case FrameKind.close: {
      if (body.length < 1 || body.length > 1 + max_close_detail_bytes) throw protocol_error('a malformed close');
      const reason = body[0];
      if (reason === CloseReason.aborted || !(reason in close_reason_names)) {
        throw protocol_error('an unknown close reason');
      }
      let detail;
      try {
        detail = strict_utf8.decode(body.subarray(1));
      } catch {
        throw protocol_error('a close detail that is not UTF-8');
      }
      return { kind, body, close_reason: reason, detail };
    }
    case FrameKind.ping:
    case FrameKind.pong:
      if (body.length !== ping_token_bytes) throw protocol_error('a malformed ping or pong');
      return { kind, body };
    default:
      throw protocol_error('an unknown frame kind');
  }
}

export class Transport {
  // send, receive: CipherStates from the handshake's split().
  constructor({ send, receive }) {
    this.send = send;
    this.receive = receive;
    this.close_sent = false;
    this.close_received = false;
    this.failed = false;
  }

  // The whole frame (length prefix included). After a close nothing more is sealed.
  seal(kind, body = empty) {
    if (body.length > max_frame_body_bytes) throw new RangeError('frame body larger than 65518 bytes');
    if (this.close_sent) throw new StrelayError('channel_closed', 'a close was sent');
    if (kind === FrameKind.close) this.close_sent = true;
    const plaintext = concat(Uint8Array.of(kind), body);
    return with_length_prefix(this.send.encrypt_with_ad(empty, plaintext));
  }

  seal_close(reason, detail = '') {
    return this.seal(FrameKind.close, close_body(reason, detail));
  }

  // A length the receiver accepts, checked before the body is read.
  check_length(length) {
    if (length < min_transport_frame_bytes || length > max_frame_bytes) {
      this.failed = true;
      throw protocol_error(`a frame of ${length} bytes`);
    }
  }

  // Opens one frame's ciphertext. Every failure is final for the channel (3.6).
  open(ciphertext) {
    if (this.failed) throw protocol_error('the channel has failed');
    if (this.close_received) {
      this.failed = true;
      throw protocol_error('a frame after the close');
    }
    this.check_length(ciphertext.length);
    const plaintext = this.receive.decrypt_with_ad(empty, ciphertext);
    if (plaintext === null) {
      this.failed = true;
      throw new StrelayError(this.receive.exhausted() ? 'nonce_exhausted' : 'decrypt_failed',
                             'a frame failed to authenticate');
    }
    try {
      const message = checked_message(plaintext[0], plaintext.subarray(frame_kind_bytes));
      if (message.kind === FrameKind.close) this.close_received = true;
      return message;
    } catch (e) {
      this.failed = true;
      throw e;
    }
  }
}
