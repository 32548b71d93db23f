// The Noise core reproduces the official vectors (tests/vectors/noise-25519-sha256.json: NN,
// XK, XX, IK, XK1), byte for byte, as common/noise.* does in tests/noise_test.cpp.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { ready } from '../src/sodium.js';
import { SymmetricState, DhKeyPair, chachapoly } from '../src/noise.js';
import { read_vector, hex, to_hex } from './support/vectors.js';

before(ready);

// AESGCM exists only for these vectors (libsodium's wasm build has no AES-GCM): node:crypto
// supplies it here, in the test alone. Noise's AESGCM nonce is 4 zero bytes then n big-endian.
const aesgcm = {
  name: 'AESGCM',
  nonce(n) {
    const nonce = Buffer.alloc(12);
    nonce.writeBigUInt64BE(n, 4);
    return nonce;
  },
  encrypt(k, n, ad, p) {
    const c = createCipheriv('aes-256-gcm', k, this.nonce(n));
    c.setAAD(ad);
    return new Uint8Array(Buffer.concat([c.update(p), c.final(), c.getAuthTag()]));
  },
  decrypt(k, n, ad, ct) {
    try {
      const d = createDecipheriv('aes-256-gcm', k, this.nonce(n));
      d.setAAD(ad);
      d.setAuthTag(ct.subarray(ct.length - 16));
      return new Uint8Array(Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]));
    } catch {
      return null;
    }
  },
};

// The handshake patterns of the vectors (Noise revision 34, section 7).
const patterns = {
  NN: { pre: [], messages: [['e'], ['e', 'ee']] },
  XK: { pre: ['rs'], messages: [['e', 'es'], ['e', 'ee'], ['s', 'se']] },
  XX: { pre: [], messages: [['e'], ['e', 'ee', 's', 'es'], ['s', 'se']] },
  IK: { pre: ['rs'], messages: [['e', 'es', 's', 'ss'], ['e', 'ee', 'se']] },
  XK1: { pre: ['rs'], messages: [['e'], ['e', 'ee', 'es'], ['s', 'se']] },
};

class Party {
  constructor(v, initiator) {
    const side = initiator ? 'init' : 'resp';
    const name = v.protocol_name;
    this.initiator = initiator;
    this.ss = new SymmetricState(name, name.includes('AESGCM') ? aesgcm : chachapoly);
    this.ss.mix_hash(hex(v[`${side}_prologue`]));
    this.s = v[`${side}_static`] ? new DhKeyPair(hex(v[`${side}_static`])) : null;
    this.e_secret = hex(v[`${side}_ephemeral`]);
    this.rs = v[`${side}_remote_static`] ? hex(v[`${side}_remote_static`]) : null;
    this.re = null;
  }

  dh(token) {
    const [mine, theirs] = {
      ee: [this.e, this.re],
      ss: [this.s, this.rs],
      es: this.initiator ? [this.e, this.rs] : [this.s, this.re],
      se: this.initiator ? [this.s, this.re] : [this.e, this.rs],
    }[token];
    this.ss.mix_key(mine.dh(theirs));
  }

  write(tokens, payload) {
    const out = [];
    for (const t of tokens) {
      if (t === 'e') {
        this.e = new DhKeyPair(this.e_secret);
        out.push(this.e.public_key);
        this.ss.mix_hash(this.e.public_key);
      } else if (t === 's') {
        out.push(this.ss.encrypt_and_hash(this.s.public_key));
      } else {
        this.dh(t);
      }
    }
    out.push(this.ss.encrypt_and_hash(payload));
    return Buffer.concat(out);
  }

  read(tokens, message) {
    let at = 0;
    for (const t of tokens) {
      if (t === 'e') {
        this.re = message.subarray(at, at + 32);
        at += 32;
        this.ss.mix_hash(this.re);
      } else if (t === 's') {
        const len = this.ss.cipher_state.has_key() ? 48 : 32;
        this.rs = this.ss.decrypt_and_hash(message.subarray(at, at + len));
        assert.ok(this.rs, 'the static key decrypts');
        at += len;
      } else {
        this.dh(t);
      }
    }
    const payload = this.ss.decrypt_and_hash(message.subarray(at));
    assert.ok(payload, 'the payload decrypts');
    return payload;
  }
}

const vectors = read_vector('noise-25519-sha256.json').vectors;

test('the official vectors cover every pattern and both ciphers', () => {
  assert.equal(vectors.length, 14);
  const names = new Set(vectors.map((v) => v.protocol_name.split('_')[1]));
  assert.deepEqual([...names].sort(), Object.keys(patterns).sort());
});

for (const v of vectors) {
  test(`${v.protocol_name} (${v.vector_source})`, () => {
    const pattern = patterns[v.protocol_name.split('_')[1]];
    const init = new Party(v, true);
    const resp = new Party(v, false);
    if (pattern.pre.includes('rs')) {  // <- s: both mix the responder's static key
      init.ss.mix_hash(init.rs);
      resp.ss.mix_hash(resp.s.public_key);
    }
    let init_tx;
    let resp_tx;
    for (const [i, m] of v.messages.entries()) {
      const initiator_sends = i % 2 === 0;
      const [sender, receiver] = initiator_sends ? [init, resp] : [resp, init];
      let ciphertext;
      let received;
      if (i < pattern.messages.length) {
        ciphertext = sender.write(pattern.messages[i], hex(m.payload));
        received = receiver.read(pattern.messages[i], ciphertext);
        if (i === pattern.messages.length - 1) {
          if (v.handshake_hash) assert.equal(to_hex(init.ss.handshake_hash()), v.handshake_hash);
          assert.deepEqual(init.ss.handshake_hash(), resp.ss.handshake_hash());
          init_tx = init.ss.split();
          resp_tx = resp.ss.split();
        }
      } else {
        const [c1, c2] = initiator_sends ? [init_tx[0], resp_tx[0]] : [resp_tx[1], init_tx[1]];
        ciphertext = c1.encrypt_with_ad(new Uint8Array(0), hex(m.payload));
        received = c2.decrypt_with_ad(new Uint8Array(0), ciphertext);
      }
      assert.equal(to_hex(ciphertext), m.ciphertext, `message ${i}`);
      assert.equal(to_hex(received), m.payload, `message ${i} decrypts`);
    }
  });
}
