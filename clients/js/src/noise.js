// The Noise core (noiseprotocol.org, revision 34): HASH = SHA-256, DH = X25519, CIPHER =
// ChaChaPoly, all from libsodium (common/noise.*). CipherState and SymmetricState follow the
// specification's objects and names; the handshake patterns live in handshake.js.
import { sodium, wipe } from './sodium.js';
import { hash_bytes, key_bytes, reserved_nonce } from './protocol.js';
import { StrelayError } from './errors.js';

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
export { concat };

export function sha256(data) {
  return sodium().crypto_hash_sha256(data);
}

function hmac(key, data) {
  return sodium().crypto_auth_hmacsha256(data, key);
}

// HKDF as Noise defines it: outputs 1..n (n = 2 or 3) of 32 bytes.
export function hkdf(ck, ikm, n) {
  const temp = hmac(ck, ikm);
  const out = [hmac(temp, Uint8Array.of(1))];
  for (let i = 2; i <= n; ++i) out.push(hmac(temp, concat(out[i - 2], Uint8Array.of(i))));
  wipe(temp);
  return out;
}

// ChaCha20-Poly1305 IETF with Noise's nonce: 4 zero bytes, then n as 8 bytes little-endian.
export const chachapoly = Object.freeze({
  name: 'ChaChaPoly',
  nonce(n) {
    const nonce = new Uint8Array(12);
    new DataView(nonce.buffer).setBigUint64(4, n, true);
    return nonce;
  },
  encrypt(k, n, ad, plaintext) {
    return sodium().crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, ad, null, this.nonce(n), k);
  },
  // Returns the plaintext, or null when the tag does not verify.
  decrypt(k, n, ad, ciphertext) {
    try {
      return sodium().crypto_aead_chacha20poly1305_ietf_decrypt(null, ciphertext, ad, this.nonce(n), k);
    } catch {
      return null;
    }
  },
});

export class CipherState {
  constructor(cipher = chachapoly, k = null) {
    this.cipher = cipher;
    this.k = k;
    this.n = 0n;
  }

  has_key() { return this.k !== null; }

  // The next nonce is the reserved 2^64-1: nothing more may be sent or received.
  exhausted() { return this.n >= reserved_nonce; }

  encrypt_with_ad(ad, plaintext) {
    if (this.k === null) return Uint8Array.from(plaintext);
    if (this.exhausted()) throw new StrelayError('nonce_exhausted', 'the nonce limit was reached');
    const out = this.cipher.encrypt(this.k, this.n, ad, plaintext);
    this.n += 1n;
    return out;
  }

  // Returns the plaintext or null; a failed decrypt never advances the counter.
  decrypt_with_ad(ad, ciphertext) {
    if (this.k === null) return Uint8Array.from(ciphertext);
    if (this.exhausted()) return null;
    const out = this.cipher.decrypt(this.k, this.n, ad, ciphertext);
    if (out !== null) this.n += 1n;
    return out;
  }

  clone() {
    const copy = new CipherState(this.cipher, this.k === null ? null : Uint8Array.from(this.k));
    copy.n = this.n;
    return copy;
  }

  wipe() {
    wipe(this.k);
    this.k = null;
  }
}

export class SymmetricState {
  constructor(protocol_name, cipher = chachapoly) {
    const name = new TextEncoder().encode(protocol_name);
    if (name.length <= hash_bytes) {
      this.h = new Uint8Array(hash_bytes);
      this.h.set(name);
    } else {
      this.h = sha256(name);
    }
    this.ck = Uint8Array.from(this.h);
    this.cipher_state = new CipherState(cipher);
  }

  mix_hash(data) {
    this.h = sha256(concat(this.h, data));
  }

  mix_key(ikm) {
    const [ck, k] = hkdf(this.ck, ikm, 2);
    wipe(this.ck);
    this.cipher_state.wipe();
    this.ck = ck;
    this.cipher_state = new CipherState(this.cipher_state.cipher, k);
  }

  // For the psk patterns of the official vectors only.
  mix_key_and_hash(ikm) {
    const [ck, temp_h, k] = hkdf(this.ck, ikm, 3);
    this.ck = ck;
    this.mix_hash(temp_h);
    this.cipher_state = new CipherState(this.cipher_state.cipher, k);
  }

  encrypt_and_hash(plaintext) {
    const c = this.cipher_state.encrypt_with_ad(this.h, plaintext);
    this.mix_hash(c);
    return c;
  }

  // Returns the plaintext, or null when the tag fails (the state is then unusable).
  decrypt_and_hash(ciphertext) {
    const p = this.cipher_state.decrypt_with_ad(this.h, ciphertext);
    if (p === null) return null;
    this.mix_hash(ciphertext);
    return p;
  }

  split() {
    const [k1, k2] = hkdf(this.ck, new Uint8Array(0), 2);
    const cipher = this.cipher_state.cipher;
    return [new CipherState(cipher, k1), new CipherState(cipher, k2)];
  }

  handshake_hash() { return this.h; }

  clone() {
    const copy = Object.create(SymmetricState.prototype);
    copy.h = Uint8Array.from(this.h);
    copy.ck = Uint8Array.from(this.ck);
    copy.cipher_state = this.cipher_state.clone();
    return copy;
  }

  wipe() {
    wipe(this.ck);
    wipe(this.h);
    this.cipher_state.wipe();
  }
}

// An X25519 key pair; dh() returns null for an all-zero result (a small-order peer key).
export class DhKeyPair {
  constructor(secret) {
    this.secret = Uint8Array.from(secret);
    this.public_key = sodium().crypto_scalarmult_base(this.secret);
  }

  static generate() {
    const secret = sodium().randombytes_buf(key_bytes);
    const pair = new DhKeyPair(secret);
    wipe(secret);
    return pair;
  }

  dh(peer_public) {
    let out;
    try {
      out = sodium().crypto_scalarmult(this.secret, peer_public);
    } catch {
      return null;  // libsodium refuses an all-zero result
    }
    if (out.every((b) => b === 0)) return null;
    return out;
  }

  wipe() { wipe(this.secret); }
}
