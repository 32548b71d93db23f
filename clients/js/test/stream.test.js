// The end-to-end stream over in-memory carriers: half-close, closes and their outcomes,
// keepalive and the dead-peer timeout, and the frames a stream must refuse.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { ready } from '../src/sodium.js';
import { Stream } from '../src/stream.js';
import { FrameKind, CloseReason } from '../src/protocol.js';
import { channel_pair } from './support/memory.js';
import { next_event } from './support/processes.js';

before(ready);
const text = (s) => new TextEncoder().encode(s);
const read_all = async (stream) => {
  const parts = [];
  for await (const chunk of stream) parts.push(...chunk);
  return new TextDecoder().decode(Uint8Array.from(parts));
};

test('half-close both ways, then a clean end confirmed by both sides', async () => {
  const { alice, bob } = await channel_pair();
  const a = new Stream(alice);
  const b = new Stream(bob);
  const closed = Promise.all([next_event(a, 'close'), next_event(b, 'close')]);
  await a.write(text('hello'));
  await a.end();
  assert.equal(await read_all(b), 'hello');  // b still writes after a's end of data
  await b.write(text('world'));
  await b.end();
  assert.equal(await read_all(a), 'world');
  const [ea, eb] = await closed;
  assert.equal(ea.error, null);
  assert.equal(eb.error, null);
  await assert.rejects(a.write(text('late')), { code: 'channel_closed' });
});

test('a write larger than one frame is split, and arrives whole', async () => {
  const { alice, bob } = await channel_pair();
  const a = new Stream(alice);
  const b = new Stream(bob);
  const data = new Uint8Array(65518 * 2 + 7).map((_, i) => i % 251);
  const reading = (async () => { const parts = []; for await (const c of b) parts.push(c); return Buffer.concat(parts); })();
  await a.write(data);
  await a.end();
  assert.deepEqual(new Uint8Array(await reading), data);
  b.close();
});

test('close() before the end of data: the peer reads channel_closed, our outcome is clean', async () => {
  const { alice, bob } = await channel_pair();
  const a = new Stream(alice);
  const b = new Stream(bob);
  const outcome = await a.close();
  assert.equal(outcome.error, null, 'the peer answered with its close{normal}');
  await assert.rejects(b.read(), { code: 'channel_closed' });
});

test('the first ping measures an RTT', async () => {
  const { alice, bob } = await channel_pair();
  const a = new Stream(alice);
  const b = new Stream(bob);
  await next_event(a, 'rtt');
  assert.ok(a.rtt >= 0);
  await Promise.all([a.close(), b.close()]);
});

test('a silent peer is dead after dead_peer_ms: peer_gone, and it is told dead_peer', async () => {
  const { alice, bob } = await channel_pair();
  const a = new Stream(alice, { keepalive_ms: 40, dead_peer_ms: 200 });
  // bob's side reads frames but never answers: a peer that vanished without a FIN.
  const seen = [];
  const reading = (async () => {
    for (;;) {
      const m = await bob.receive().catch(() => null);
      if (!m) return;
      seen.push(m.kind);
      if (m.kind === FrameKind.close) return m.close_reason;
    }
  })();
  const ended = await next_event(a, 'close', () => true, 5000);
  assert.equal(ended.error.code, 'peer_gone');
  assert.equal(await reading, CloseReason.dead_peer);
  assert.ok(seen.filter((k) => k === FrameKind.ping).length >= 2, 'it pinged before giving up');
});

test('data after the end of data, and a control frame end to end, are protocol errors', async () => {
  for (const bad of [[FrameKind.data, text('x')], [FrameKind.control, text('x')]]) {
    const { alice, bob } = await channel_pair();
    const b = new Stream(bob);
    if (bad[0] === FrameKind.data) await alice.send(FrameKind.data, new Uint8Array(0));
    await alice.send(...bad);
    const ended = await next_event(b, 'close', () => true, 5000);
    assert.equal(ended.error.code, 'protocol_error');
    let close = null;
    for (let m = await alice.receive(); ; m = await alice.receive()) {
      if (m.kind === FrameKind.close) { close = m.close_reason; break; }
    }
    assert.equal(close, CloseReason.protocol_error);
  }
});

test('a path that takes no bytes for write_stall_ms ends the stream: timeout', async () => {
  const { alice } = await channel_pair();
  const a = new Stream(alice, { write_stall_ms: 150, close_linger_ms: 100 });
  alice.carrier.write = () => new Promise(() => {});  // the path stops taking bytes
  const started = Date.now();
  await assert.rejects(a.write(new Uint8Array(10)), { code: 'timeout' });
  assert.ok(Date.now() - started >= 140);
  const ended = await next_event(a, 'close', () => true, 5000);
  assert.equal(ended.error.code, 'timeout');
});

test('a write racing our own close fails with channel_closed, and the outcome stays clean', async () => {
  const { alice, bob } = await channel_pair();
  const a = new Stream(alice);
  const b = new Stream(bob);
  const closing = a.close();
  await assert.rejects(a.write(text('too late')), { code: 'channel_closed' });
  assert.equal((await closing).error, null);
  await b.close();
});
