// JS nodes through real strelay processes (STRELAY_BIN_DIR): both ends are this library.
// The carrier is TCP, and WebSocket too when STRELAY_JS_CARRIERS names it.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { ready, Node, publicKeyToString } from '../src/index.js';
import { Scene, next_event, wait_for } from './support/processes.js';
import { carrier_for, fast, exchange } from './support/nodes.js';

before(ready);

const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');

async function listening(node) {
  const up = next_event(node, 'relay', (d) => d.state === 'connected');
  node.listen();
  return up;
}

for (const kind of carrier_for.kinds()) {
  const opts = (relay) => ({ timers: fast, ...carrier_for(kind, relay) });

  test(`JS to JS through strelay (${kind}): 16 MiB each way, SHA-256 equal, half-close, clean close`, async (t) => {
    const scene = new Scene(t);
    const relay = await scene.relay('r1', carrier_for.relay_options(kind));
    const alice = scene.identity('alice');
    const bob = scene.identity('bob');
    const listener = new Node({ identity: bob, relays: [relay.ticket], friends: [alice.publicKey], ...opts(relay) });
    const connector = new Node({ identity: alice, ...opts(relay) });
    t.after(() => Promise.all([listener.close(), connector.close()]));
    await listening(listener);
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
    assert.ok(stream.rtt !== null && stream.rtt >= 0, 'the first ping measured an RTT');
  });

  test(`failover between two relays (${kind}): the first is down, connect goes through the second`, async (t) => {
    const scene = new Scene(t);
    const r1 = await scene.relay('r1', carrier_for.relay_options(kind));
    const r2 = await scene.relay('r2', carrier_for.relay_options(kind));
    const alice = scene.identity('alice');
    const bob = scene.identity('bob');
    const listener = new Node({ identity: bob, relays: [r1.ticket, r2.ticket], friends: [alice.publicKey], ...opts(r1) });
    const connector = new Node({ identity: alice, ...opts(r1) });
    t.after(() => Promise.all([listener.close(), connector.close()]));
    const both_up = new Set();
    const up = new Promise((resolve) => listener.addEventListener('relay', (e) => {
      if (e.detail.state === 'connected') both_up.add(e.detail.relay.address);
      if (both_up.size === 2) resolve();
    }));
    listener.listen();
    await up;
    const r1_down = next_event(listener, 'relay', (d) => d.relay.address === r1.ticket.address && d.state !== 'connected' && d.retryInMs !== undefined);
    await scene.stop(r1.child);
    const down = await r1_down;
    assert.ok(down.retryInMs <= fast.backoff.cap_ms, `retry within the cap (${down.retryInMs} ms)`);
    const incoming = next_event(listener, 'incoming');
    const stream = await connector.connect({ publicKey: bob.publicKey, relays: [r1.ticket, r2.ticket] });
    assert.equal(stream.relay.address, r2.ticket.address, 'through the second relay');
    const { stream: accepted } = await incoming;
    const got = exchange(accepted, new TextEncoder().encode('pong'));
    const mine = await exchange(stream, new TextEncoder().encode('ping'));
    assert.equal(mine.bytes, 4);
    assert.equal((await got).bytes, 4);
    // The first relay back on the same port: the listener is back on it within the cap.
    const back = next_event(listener, 'relay', (d) => d.relay.address === r1.ticket.address && d.state === 'connected', 10_000);
    await scene.relay('r1', { port: r1.port, ...carrier_for.relay_options(kind) });
    await back;
  });

  test(`Refused{not_found} (${kind}): nobody listens for the key`, async (t) => {
    const scene = new Scene(t);
    const relay = await scene.relay('r1', carrier_for.relay_options(kind));
    const connector = new Node({ identity: scene.identity('alice'), ...opts(relay) });
    t.after(() => connector.close());
    const absent = scene.identity('nobody');
    await assert.rejects(connector.connect({ publicKey: absent.publicKey, relays: [relay.ticket] }),
                         (e) => e.name === 'StrelayError' && e.code === 'not_found' && e.failures.length === 1);
  });

  test(`the listener's friend list (${kind}): a stranger is rejected, and the listener says so`, async (t) => {
    const scene = new Scene(t);
    const relay = await scene.relay('r1', carrier_for.relay_options(kind));
    const alice = scene.identity('alice');
    const bob = scene.identity('bob');
    const carol = scene.identity('carol');
    const listener = new Node({ identity: bob, relays: [relay.ticket], friends: (key) => publicKeyToString(key) === publicKeyToString(carol.publicKey), ...opts(relay) });
    const connector = new Node({ identity: alice, ...opts(relay) });
    t.after(() => Promise.all([listener.close(), connector.close()]));
    await listening(listener);
    const refused = next_event(listener, 'refused');
    await assert.rejects(connector.connect({ publicKey: bob.publicKey, relays: [relay.ticket] }), { code: 'rejected' });
    const detail = await refused;
    assert.deepEqual(detail.peer, alice.publicKey);
    // Friends change at run time: now alice is one.
    listener.setFriends([alice.publicKey]);
    const incoming = next_event(listener, 'incoming');
    const stream = await connector.connect({ publicKey: bob.publicKey, relays: [relay.ticket] });
    await incoming;
    stream.close();
  });

  test(`a wrong relay key (${kind}): the node stops at msg2, the relay never learns who called`, async (t) => {
    const scene = new Scene(t);
    const relay = await scene.relay('r1', carrier_for.relay_options(kind));
    const alice = scene.identity('alice');
    const impostor_key = scene.identity('carol').publicKey;
    const connector = new Node({ identity: alice, ...opts(relay) });
    t.after(() => connector.close());
    const wrong = { publicKey: impostor_key, address: relay.ticket.address };
    const failed_before = (relay.log().match(/event=handshake_failed/g) ?? []).length;
    await assert.rejects(connector.connect({ publicKey: scene.identity('bob').publicKey, relays: [wrong] }),
                         { code: 'relay_identity_mismatch' });
    await wait_for(() => (relay.log().match(/event=handshake_failed/g) ?? []).length > failed_before, 5000, 'the relay to log the failed handshake');
    const line = relay.log().split('\n').filter((l) => l.includes('event=handshake_failed')).pop();
    assert.match(line, /aborted|stage=msg3/, `the relay waited for msg3 and got an EOF: ${line}`);
    const fp = publicKeyToString(alice.publicKey).slice(0, 8);
    assert.ok(!relay.log().includes(fp), "alice's key never reached the relay");
  });
}

test('relay states: a relay whose allowlist leaves us out is refused, and setRelays moves the listener', async (t) => {
  const scene = new Scene(t);
  const carol = scene.identity('carol');
  const allow = scene.write('allow.txt', `${publicKeyToString(carol.publicKey)}\n`);
  const private_relay = await scene.relay('private', { extra: ['--allow', allow] });
  const open_relay = await scene.relay('open');
  const bob = scene.identity('bob');
  const node = new Node({ identity: bob, relays: [private_relay.ticket], ...carrier_for('tcp'), timers: fast });
  t.after(() => node.close());
  const refused = next_event(node, 'relay', (d) => d.state === 'refused');
  node.listen();
  const detail = await refused;
  assert.equal(detail.error.code, 'not_allowed');
  assert.ok(detail.retryInMs >= 0 && detail.retryInMs <= fast.backoff.cap_ms);
  const closed = next_event(node, 'relay', (d) => d.state === 'closed' && d.relay.address === private_relay.ticket.address);
  const up = next_event(node, 'relay', (d) => d.state === 'connected' && d.relay.address === open_relay.ticket.address);
  node.setRelays([open_relay.ticket]);
  await Promise.all([closed, up]);
});

// A path that flips one byte of what the client sends, past the handshakes: tunnel data.
async function flipping_proxy(t, target_port, flip_at) {
  const server = net.createServer((client) => {
    const upstream = net.connect(target_port, '127.0.0.1');
    let offset = 0;
    client.on('data', (data) => {
      if (offset <= flip_at && flip_at < offset + data.length) {
        data = Buffer.from(data);
        data[flip_at - offset] ^= 0x01;
      }
      offset += data.length;
      upstream.write(data);
    });
    upstream.pipe(client);
    client.on('end', () => upstream.end());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => { server.close(resolve); server.closeAllConnections?.(); }));
  return server.address().port;
}

test('a byte flipped in the tunnel: an integrity error at both ends, no altered byte delivered', async (t) => {
  const scene = new Scene(t);
  const relay = await scene.relay('r1');
  const alice = scene.identity('alice');
  const bob = scene.identity('bob');
  const listener = new Node({ identity: bob, relays: [relay.ticket], friends: [alice.publicKey], ...carrier_for('tcp'), timers: fast });
  t.after(() => listener.close());
  await listening(listener);
  const flip_at = 1_000_000;
  const proxy_port = await flipping_proxy(t, relay.port, flip_at);
  const via_proxy = { publicKey: relay.ticket.publicKey, address: `127.0.0.1:${proxy_port}` };
  const connector = new Node({ identity: alice, ...carrier_for('tcp'), timers: fast });
  t.after(() => connector.close());
  const incoming = next_event(listener, 'incoming');
  const stream = await connector.connect({ publicKey: bob.publicKey, relays: [via_proxy] });
  const { stream: accepted } = await incoming;
  const data = new Uint8Array(randomBytes(4 << 20));
  const received = [];
  const reading = (async () => {
    try {
      for await (const chunk of accepted) received.push(chunk);
      return null;
    } catch (e) {
      return e;
    }
  })();
  const sender_closed = next_event(stream, 'close', () => true, 30_000);
  const writing = exchange(stream, data).catch((e) => e);
  const error = await reading;
  assert.equal(error?.code, 'decrypt_failed', 'the receiver reports the failed frame');
  assert.equal((await sender_closed).error?.code, 'protocol_error', 'the sender hears of it');
  await writing;
  const got = Buffer.concat(received);
  assert.ok(got.length < data.length && got.length > 0, `a prefix arrived (${got.length} bytes)`);
  assert.ok(got.length < flip_at, 'nothing from the flipped frame or after');
  assert.equal(sha(got), sha(data.subarray(0, got.length)), 'every delivered byte is the one sent');
});
