// strelay's signed handshake reproduces the frozen vectors byte for byte: the hop's
// (tests/vectors/strelay-xk1sig.json) and the end-to-end one (strelay-xk1sig-e2e.json); then
// the checks of docs/protocol.md 2.5, and the transport's example frames of 3.7.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ready } from '../src/sodium.js';
import { Identity } from '../src/identity_file.js';
import { InitiatorHandshake, ResponderHandshake } from '../src/handshake.js';
import { Transport } from '../src/transport.js';
import { hop_domain, end_to_end_domain, FrameKind, CloseReason } from '../src/protocol.js';
import { read_vector, hex, to_hex, repo_root } from './support/vectors.js';

before(ready);

const empty = new Uint8Array(0);
const domains = [['strelay-xk1sig.json', hop_domain], ['strelay-xk1sig-e2e.json', end_to_end_domain]];

function parties(v, domain) {
  const node = Identity.fromSeed(hex(v.init_static));
  const relay = Identity.fromSeed(hex(v.resp_static));
  const init = new InitiatorHandshake({ identity: node, responder_key: hex(v.init_remote_static),
                                        domain, ephemeral: hex(v.init_ephemeral) });
  const resp = new ResponderHandshake({ identity: relay, domain, ephemeral: hex(v.resp_ephemeral) });
  return { node, relay, init, resp };
}

for (const [file, domain] of domains) {
  test(`the ${domain.name} handshake reproduces ${file} byte for byte`, () => {
    const v = read_vector(file);
    assert.equal(v.protocol_name, 'Noise_XK1sig_25519_ChaChaPoly_SHA256');
    assert.equal(v.resp_signature_context, domain.responder_context);
    assert.equal(v.init_signature_context, domain.initiator_context);
    const { node, relay, init, resp } = parties(v, domain);
    assert.equal(to_hex(node.publicKey), v.init_static_public);
    assert.equal(to_hex(relay.publicKey), v.resp_static_public);
    const [m1, m2, m3, ...transport] = v.messages;
    const msg1 = init.create_msg1();
    assert.equal(to_hex(msg1), m1.ciphertext);
    resp.consume_msg1(msg1);
    const msg2 = resp.create_msg2();
    assert.equal(to_hex(msg2), m2.ciphertext);
    init.consume_msg2(msg2);
    const msg3 = init.create_msg3(hex(m3.payload));
    assert.equal(to_hex(msg3), m3.ciphertext);
    assert.equal(to_hex(resp.consume_msg3(msg3)), m3.payload);
    assert.deepEqual(resp.peer, node.publicKey);
    const a = init.split();
    const b = resp.split();
    assert.equal(to_hex(a.session_id), v.handshake_hash);
    assert.equal(to_hex(b.session_id), v.handshake_hash);
    assert.equal(to_hex(a.send.k), v.init_send_key);
    assert.equal(to_hex(b.send.k), v.resp_send_key);
    for (const [i, m] of transport.entries()) {
      const [tx, rx] = i % 2 === 0 ? [a.send, b.receive] : [b.send, a.receive];
      const c = tx.encrypt_with_ad(empty, hex(m.payload));
      assert.equal(to_hex(c), m.ciphertext, `transport message ${i}`);
      assert.equal(to_hex(rx.decrypt_with_ad(empty, c)), m.payload);
    }
  });
}

test('the hop and end-to-end handshakes cannot be mixed: each fails the other at msg2', () => {
  const v = read_vector('strelay-xk1sig.json');
  const node = Identity.fromSeed(hex(v.init_static));
  const relay = Identity.fromSeed(hex(v.resp_static));
  const init = new InitiatorHandshake({ identity: node, responder_key: relay.publicKey, domain: end_to_end_domain });
  const resp = new ResponderHandshake({ identity: relay, domain: hop_domain });
  resp.consume_msg1(init.create_msg1());
  assert.throws(() => init.consume_msg2(resp.create_msg2()), { code: 'relay_identity_mismatch' });
});

test('msg2 from a responder without the expected key: relay_identity_mismatch, and no msg3', () => {
  const node = Identity.generate();
  const expected = Identity.generate();
  const impostor = Identity.generate();
  const init = new InitiatorHandshake({ identity: node, responder_key: expected.publicKey });
  const resp = new ResponderHandshake({ identity: impostor });
  resp.consume_msg1(init.create_msg1());
  assert.throws(() => init.consume_msg2(resp.create_msg2()), { code: 'relay_identity_mismatch' });
  assert.throws(() => init.create_msg3(), { code: 'handshake_failed' });
});

test('a small-order msg1 ephemeral, wrong lengths and a flipped msg3 byte fail the handshake', () => {
  const relay = Identity.generate();
  assert.throws(() => new ResponderHandshake({ identity: relay }).consume_msg1(new Uint8Array(32)), { code: 'handshake_failed' });
  assert.throws(() => new ResponderHandshake({ identity: relay }).consume_msg1(new Uint8Array(31)), { code: 'handshake_failed' });
  const node = Identity.generate();
  const init = new InitiatorHandshake({ identity: node, responder_key: relay.publicKey });
  const resp = new ResponderHandshake({ identity: relay });
  resp.consume_msg1(init.create_msg1());
  const msg2 = resp.create_msg2();
  assert.throws(() => new InitiatorHandshake({ identity: node, responder_key: relay.publicKey }).consume_msg2(msg2), { code: 'handshake_failed' });
  init.consume_msg2(msg2);
  const msg3 = init.create_msg3(Uint8Array.of(1, 2, 3));
  for (const at of [0, 50, msg3.length - 1]) {
    const bad = Uint8Array.from(msg3);
    bad[at] ^= 1;
    const fresh = new ResponderHandshake({ identity: relay });
    assert.throws(() => fresh.consume_msg3(bad), { code: 'handshake_failed' });
  }
  assert.throws(() => resp.consume_msg3(msg3.subarray(0, 143)), { code: 'handshake_failed' });
});

test("the transport's example frames of docs/protocol.md 3.7 are reproduced", () => {
  const v = read_vector('strelay-xk1sig.json');
  const doc = readFileSync(path.join(repo_root, 'docs/protocol.md'), 'utf8');
  const section = doc.slice(doc.indexOf('### 3.7'), doc.indexOf('### 3.8'));
  const frames = [...section.matchAll(/^\s+([0-9a-f]{4}) ([0-9a-f]+)$/gm)].map((m) => m[1] + m[2]);
  assert.equal(frames.length, 4);
  const { init, resp } = parties(v, hop_domain);
  resp.consume_msg1(init.create_msg1());
  init.consume_msg2(resp.create_msg2());
  resp.consume_msg3(init.create_msg3(hex(v.messages[2].payload)));
  const node = new Transport(init.split());
  const relay = new Transport(resp.split());
  const token = Uint8Array.of(0, 1, 2, 3, 4, 5, 6, 7);
  assert.equal(to_hex(node.seal(FrameKind.ping, token)), frames[0]);
  assert.equal(to_hex(relay.seal(FrameKind.pong, token)), frames[1]);
  assert.equal(to_hex(node.seal(FrameKind.data, new TextEncoder().encode('hello'))), frames[2]);
  assert.equal(to_hex(node.seal_close(CloseReason.normal, 'bye')), frames[3]);
});
