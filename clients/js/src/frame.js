// The 2-byte big-endian length prefix of handshake messages and transport frames
// (docs/protocol.md 2.3, 3.2), and exact reads from a carrier: never past a frame's end.
import { length_prefix_bytes, max_frame_bytes } from './protocol.js';
import { StrelayError } from './errors.js';

export function with_length_prefix(body) {
  if (body.length > max_frame_bytes) throw new RangeError('frame body longer than 65535 bytes');
  const out = new Uint8Array(length_prefix_bytes + body.length);
  out[0] = body.length >> 8;
  out[1] = body.length & 0xff;
  out.set(body, length_prefix_bytes);
  return out;
}

export function read_length(prefix) {
  return (prefix[0] << 8) | prefix[1];
}

// Reads a length prefix and then exactly that body. `check(length)` refuses a length before
// any byte of the body is read (and before any buffer is allocated for it). Returns null at
// an EOF between frames; an EOF inside a frame is `aborted`, as is one between frames for
// callers that pass eof_is_error.
export async function read_frame(reader, check) {
  const prefix = await reader.read_exact(length_prefix_bytes);
  if (prefix === null) return null;
  const length = read_length(prefix);
  check(length);
  const body = await reader.read_exact(length);
  if (body === null) throw new StrelayError('aborted', 'the connection ended inside a frame');
  return body;
}
