// Ed25519 public keys: validity (libsodium's point check), text form, equality.
import { sodium } from './sodium.js';
import { key_length_problem, to_base64url, try_from_base64url } from './base64url.js';
import { key_bytes } from './protocol.js';
import { StrelayError } from './errors.js';

// A key is a usable identity when crypto_core_ed25519_is_valid_point accepts it: canonical,
// on the curve, not of small order, in the prime-order subgroup (docs/protocol.md 2.5).
export function is_valid_identity_key(bytes) {
  return bytes instanceof Uint8Array && bytes.length === key_bytes &&
         sodium().crypto_core_ed25519_is_valid_point(bytes);
}

// Why libsodium refused a key, for the message (common/tickets.cpp point_problem).
function point_problem(p) {
  const s = sodium();
  let high_all_ones = (p[31] & 0x7f) === 0x7f;
  for (let i = 1; i < 31; ++i) high_all_ones &&= p[i] === 0xff;
  if (high_all_ones && p[0] >= 0xed) return 'a non-canonical encoding';
  let twice;
  try {
    twice = s.crypto_core_ed25519_add(p, p);
  } catch {
    return 'not a point on the curve';
  }
  try {
    const four = s.crypto_core_ed25519_add(twice, twice);
    const eight = s.crypto_core_ed25519_add(four, four);
    const neutral = new Uint8Array(32);
    neutral[0] = 1;
    if (equal_bytes(eight, neutral)) return 'a small-order point';
  } catch { /* fall through */ }
  return 'not in the prime-order subgroup';
}

export function equal_bytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; ++i) diff |= a[i] ^ b[i];
  return diff === 0;
}

// Parses a base64url key; returns {key} or {error} with `name` as the subject of the message.
export function try_parse_key(text, name) {
  const length = key_length_problem(text, key_bytes);
  if (length) return { error: `${name} ${length} (a base64url Ed25519 public key)` };
  const decoded = try_from_base64url(text);
  if (decoded.error) return { error: `${name}: ${decoded.error}` };
  const bytes = decoded.bytes;
  if (bytes.length !== key_bytes) {
    return { error: `${name} is ${bytes.length} bytes, expected ${key_bytes} (an Ed25519 public key)` };
  }
  if (!is_valid_identity_key(bytes)) {
    return { error: `${name} is not a valid Ed25519 public key: ${point_problem(bytes)}` };
  }
  return { key: bytes };
}

export function publicKeyToString(key) {
  if (!(key instanceof Uint8Array) || key.length !== key_bytes) {
    throw new StrelayError('bad_key', `a public key is ${key_bytes} bytes`);
  }
  return to_base64url(key);
}

export function publicKeyFromString(text) {
  const parsed = try_parse_key(String(text), 'key');
  if (parsed.error) throw new StrelayError('bad_key', parsed.error);
  return parsed.key;
}

// A short, printable fingerprint for events and logs (the first 8 characters of the key).
export function fingerprint(key) {
  return to_base64url(key).slice(0, 8);
}
