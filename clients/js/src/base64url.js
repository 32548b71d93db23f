// base64url without padding (RFC 4648 section 5), strict: libsodium decodes, after our own
// checks name the cause of a refusal (common/base64url.cpp).
import { sodium } from './sodium.js';

const alphabet = /^[A-Za-z0-9_-]$/;

export function to_base64url(bytes) {
  const s = sodium();
  return s.to_base64(bytes, s.base64_variants.URLSAFE_NO_PADDING);
}

// Returns {bytes} or {error}: the error names the first problem, never quoting the text.
export function try_from_base64url(text) {
  for (let i = 0; i < text.length; ++i) {
    const c = text[i];
    if (c === '=') return { error: "padding '=' is not allowed (base64url without padding)" };
    if (!alphabet.test(c)) {
      const code = c.charCodeAt(0);
      const printable = code >= 0x20 && code < 0x7f;
      return {
        error: printable ? `character '${c}' at offset ${i} is not in the base64url alphabet`
                         : `a non-printable byte at offset ${i} is not in the base64url alphabet`,
      };
    }
  }
  if (text.length % 4 === 1) {
    return { error: `length ${text.length} is not a valid unpadded base64url length` };
  }
  if (text.length === 0) return { bytes: new Uint8Array(0) };
  const s = sodium();
  try {
    return { bytes: s.from_base64(text, s.base64_variants.URLSAFE_NO_PADDING) };
  } catch {
    return { error: 'non-canonical base64url (non-zero trailing bits)' };
  }
}

// For a key of `bytes` bytes: "is 42 characters (31 bytes), expected 43" when `text` is all
// base64url characters but not the key's length; '' otherwise (common/base64url.cpp).
export function key_length_problem(text, bytes) {
  const expected = Math.floor((bytes * 4 + 2) / 3);
  if (text.length === expected || ![...text].every((c) => alphabet.test(c))) return '';
  let problem = `is ${text.length} characters`;
  if (text.length > 0 && text.length % 4 !== 1) problem += ` (${Math.floor(text.length * 3 / 4)} bytes)`;
  return `${problem}, expected ${expected}`;
}
