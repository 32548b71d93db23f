// JS nodes through a real strelay (STRELAY_BIN_DIR): both ends are this library.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { ready, Node, tcpCarrier, StrelayError } from '../src/index.js';
import { Scene, next_event } from './support/processes.js';

before(ready);

const fast = { backoff: { initial_ms: 200, cap_ms: 2000 }, connect_timeout_ms: 3000 };
export const tcp = (relay) => tcpCarrier(relay.address, { timeout_ms: 3000 });
const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');

// Writes `data` in pieces, then the end of data; reads everything until the peer's end.
export async function exchange(stream, data) {
  const reading = (async () => {
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of stream) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    return { sha: hash.digest('hex'), bytes };
  })();
  for (let at = 0; at < data.length; at += 100_000) await stream.write(data.subarray(at, at + 100_000));
  await stream.end();
  return reading;
}

test('JS to JS through strelay over TCP: 16 MiB each way, SHA-256 equal, half-close, clean close', async (t) => {
  const scene = new Scene(t);
  const relay = await scene.relay('r1');
  const alice = scene.identity('alice');
  const bob = scene.identity('bob');
  const listener = new Node({ identity: bob, relays: [relay.ticket], friends: [alice.publicKey], carrier: tcp, timers: fast });
  const connector = new Node({ identity: alice, carrier: tcp, timers: fast });
  t.after(() => Promise.all([listener.close(), connector.close()]));
  const up = next_event(listener, 'relay', (d) => d.state === 'connected');
  listener.listen();
  await up;
  const incoming = next_event(listener, 'incoming');
  const stream = await connector.connect({ publicKey: bob.publicKey, relays: [relay.ticket] });
  const { stream: accepted } = await incoming;
  assert.deepEqual(accepted.peer, alice.publicKey);
  assert.deepEqual(stream.peer, bob.publicKey);
  const up_data = new Uint8Array(randomBytes(16 << 20));
  const down_data = new Uint8Array(randomBytes(16 << 20));
  const closed_a = next_event(stream, 'close', () => true, 60_000);
  const closed_b = next_event(accepted, 'close', () => true, 60_000);
  const [at_bob, at_alice] = await Promise.all([exchange(accepted, down_data), exchange(stream, up_data)]);
  assert.equal(at_bob.bytes, up_data.length);
  assert.equal(at_bob.sha, sha(up_data));
  assert.equal(at_alice.sha, sha(down_data));
  const [a, b] = await Promise.all([closed_a, closed_b]);
  assert.equal(a.error, null, `alice's outcome: ${a.error?.code}`);
  assert.equal(b.error, null, `bob's outcome: ${b.error?.code}`);
  assert.ok(stream.rtt !== null && stream.rtt >= 0);
});
