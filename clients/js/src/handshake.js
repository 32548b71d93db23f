// strelay's signed handshake, Noise XK1 in shape with Ed25519 signatures (docs/protocol.md 2),
// sans-io: messages in, messages and decisions out. The same code runs on the hop (node to
// relay) and end to end (node to node); the domain gives each its own prologue and contexts.
//
//   pre-message  <- s          MixHash(S_R)
//   msg1  -> e
//   msg2  <- e, ee, sig        the responder signs ctx_R || h
//   msg3  -> s, sig, payload   the initiator signs ctx_I || h
//
// Each consume_x() computes into a copy of the state and commits only when every check passed;
// a failure wipes the state and throws a StrelayError carrying no detail for the wire.
import { SymmetricState, DhKeyPair, concat } from './noise.js';
import { sodium } from './sodium.js';
import { StrelayError } from './errors.js';
import { is_valid_identity_key } from './keys.js';
import { create_preamble } from './preamble.js';
import {
  handshake_protocol_name, key_bytes, signature_bytes, aead_tag_bytes, hop_domain,
  handshake_msg1_bytes, handshake_msg2_bytes, handshake_msg3_min_bytes, max_frame_bytes,
  max_handshake_payload_bytes,
} from './protocol.js';

const text = (s) => new TextEncoder().encode(s);

// The prologue: the 8 preamble bytes, then the domain's suffix, mixed as ONE MixHash.
export function prologue_for(domain, preamble = create_preamble()) {
  return concat(preamble, domain.prologue_suffix);
}

function initial_state(domain, responder_key, preamble) {
  const state = new SymmetricState(handshake_protocol_name);
  state.mix_hash(prologue_for(domain, preamble));
  state.mix_hash(responder_key);  // <- s (pre-message)
  return state;
}

function verify(key, message, signature) {
  return sodium().crypto_sign_verify_detached(signature, message, key);
}

export class InitiatorHandshake {
  // identity: ours (signs); responder_key: from the ticket (the relay's or the friend's key).
  constructor({ identity, responder_key, domain = hop_domain, ephemeral = null, preamble }) {
    this.identity = identity;
    this.responder_key = responder_key;
    this.domain = domain;
    this.e = ephemeral ? new DhKeyPair(ephemeral) : DhKeyPair.generate();
    this.symmetric = initial_state(domain, responder_key, preamble);
    this.state = 'started';
  }

  #fail(code) {
    this.e.wipe();
    this.symmetric.wipe();
    this.state = 'failed';
    return new StrelayError(code, code === 'relay_identity_mismatch'
        ? 'the responder does not hold the expected key' : 'the handshake failed');
  }

  create_msg1() {
    if (this.state !== 'started') throw this.#fail('handshake_failed');
    this.symmetric.mix_hash(this.e.public_key);  // e
    this.symmetric.mix_hash(new Uint8Array(0));  // empty payload without k: MixHash("")
    this.state = 'msg1_sent';
    return Uint8Array.from(this.e.public_key);
  }

  // Checks the responder; throws relay_identity_mismatch when it is not the expected key.
  consume_msg2(body) {
    if (this.state !== 'msg1_sent' || body.length !== handshake_msg2_bytes) {
      throw this.#fail('handshake_failed');
    }
    const next = this.symmetric.clone();
    const re = body.subarray(0, key_bytes);
    next.mix_hash(re);  // e
    const ee = this.e.dh(re);  // ee
    if (ee === null) throw this.#fail('handshake_failed');
    next.mix_key(ee);
    const signed = concat(text(this.domain.responder_context), next.handshake_hash());
    const sig = next.decrypt_and_hash(body.subarray(key_bytes));  // sig
    if (sig === null || !is_valid_identity_key(this.responder_key) ||
        !verify(this.responder_key, signed, sig)) {
      next.wipe();
      throw this.#fail('relay_identity_mismatch');
    }
    this.symmetric.wipe();
    this.symmetric = next;
    this.e.wipe();
    this.state = 'msg2_verified';
  }

  create_msg3(payload = new Uint8Array(0)) {
    if (payload.length > max_handshake_payload_bytes) {
      throw new RangeError('handshake payload larger than max_handshake_payload_bytes');
    }
    if (this.state !== 'msg2_verified') throw this.#fail('handshake_failed');
    const s = this.symmetric;
    const enc_s = s.encrypt_and_hash(this.identity.publicKey);  // s
    const sig = this.identity.sign(concat(text(this.domain.initiator_context), s.handshake_hash()));
    const enc_sig = s.encrypt_and_hash(sig);  // sig
    const enc_payload = s.encrypt_and_hash(payload);
    this.state = 'done';
    return concat(enc_s, enc_sig, enc_payload);
  }

  // {send, receive, session_id}: the initiator sends with k1 and receives with k2.
  split() {
    if (this.state !== 'done') throw new Error('split before the handshake completed');
    const [c1, c2] = this.symmetric.split();
    const session_id = Uint8Array.from(this.symmetric.handshake_hash());
    this.symmetric.wipe();
    this.state = 'split';
    return { send: c1, receive: c2, session_id };
  }
}

export class ResponderHandshake {
  constructor({ identity, domain = hop_domain, ephemeral = null, preamble }) {
    this.identity = identity;
    this.domain = domain;
    this.e = ephemeral ? new DhKeyPair(ephemeral) : DhKeyPair.generate();
    this.symmetric = initial_state(domain, identity.publicKey, preamble);
    this.state = 'started';
    this.peer = null;
  }

  #fail() {
    this.e.wipe();
    this.symmetric.wipe();
    this.state = 'failed';
    return new StrelayError('handshake_failed', 'the handshake failed');
  }

  consume_msg1(body) {
    if (this.state !== 'started' || body.length !== handshake_msg1_bytes) throw this.#fail();
    const ee = this.e.dh(body);  // computed now: nothing is signed for a bad key
    if (ee === null) throw this.#fail();
    this.symmetric.mix_hash(body);  // e
    this.symmetric.mix_hash(new Uint8Array(0));
    this.ee = ee;
    this.state = 'msg1_received';
  }

  create_msg2() {
    if (this.state !== 'msg1_received') throw this.#fail();
    const s = this.symmetric;
    s.mix_hash(this.e.public_key);  // e
    s.mix_key(this.ee);  // ee
    this.ee.fill(0);
    const sig = this.identity.sign(concat(text(this.domain.responder_context), s.handshake_hash()));
    const out = concat(this.e.public_key, s.encrypt_and_hash(sig));  // sig
    this.e.wipe();
    this.state = 'msg2_sent';
    return out;
  }

  // Returns the first request's payload; this.peer is then the initiator's authenticated key.
  consume_msg3(body) {
    if (this.state !== 'msg2_sent' || body.length < handshake_msg3_min_bytes ||
        body.length > max_frame_bytes) {
      throw this.#fail();
    }
    const next = this.symmetric.clone();
    const s_len = key_bytes + aead_tag_bytes;
    const sig_len = signature_bytes + aead_tag_bytes;
    const peer = next.decrypt_and_hash(body.subarray(0, s_len));  // s
    if (peer === null || !is_valid_identity_key(peer)) throw this.#fail();
    const signed = concat(text(this.domain.initiator_context), next.handshake_hash());
    const sig = next.decrypt_and_hash(body.subarray(s_len, s_len + sig_len));  // sig
    if (sig === null || !verify(peer, signed, sig)) throw this.#fail();
    const payload = next.decrypt_and_hash(body.subarray(s_len + sig_len));
    if (payload === null) throw this.#fail();
    this.symmetric.wipe();
    this.symmetric = next;
    this.peer = peer;
    this.state = 'done';
    return payload;
  }

  // The responder sends with k2 and receives with k1.
  split() {
    if (this.state !== 'done') throw new Error('split before the handshake completed');
    const [c1, c2] = this.symmetric.split();
    const session_id = Uint8Array.from(this.symmetric.handshake_hash());
    this.symmetric.wipe();
    this.state = 'split';
    return { send: c2, receive: c1, session_id };
  }
}
