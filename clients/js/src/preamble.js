// The 8-byte preamble: "strelay" then the protocol version (docs/protocol.md 2.2).
import { preamble_magic, protocol_version, preamble_bytes } from './protocol.js';

export function create_preamble(version = protocol_version) {
  const out = new Uint8Array(preamble_bytes);
  out.set(preamble_magic);
  out[preamble_magic.length] = version;
  return out;
}

// The version a peer's preamble announces, or null when it is not strelay's magic.
export function preamble_version(bytes) {
  if (bytes.length !== preamble_bytes) return null;
  for (let i = 0; i < preamble_magic.length; ++i) if (bytes[i] !== preamble_magic[i]) return null;
  return bytes[preamble_magic.length];
}
