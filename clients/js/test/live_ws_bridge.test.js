// The WebSocket carrier (the ws package, as in Node tools) against a WebSocket server that
// splits and joins messages its own way: a test bridge in front of a real strelay, which
// carries each WebSocket's bytes to the relay's TCP port. Message boundaries must mean
// nothing: the bridge re-chunks every direction.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { WebSocketServer } from 'ws';
import { ready, Node } from '../src/index.js';
import { Scene, next_event } from './support/processes.js';
import { carrier_for, fast, exchange } from './support/nodes.js';

before(ready);
const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');

// A WebSocket endpoint on 127.0.0.1 at /strelay that pipes to relay_port, re-chunking bytes
// into messages of 1 to 3000 bytes towards the client.
async function bridge(t, relay_port) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/strelay' });
  await new Promise((resolve) => wss.once('listening', resolve));
  wss.on('connection', (socket) => {
    const tcp = net.connect({ port: relay_port, host: '127.0.0.1', allowHalfOpen: true });
    socket.on('message', (data) => tcp.write(data));
    tcp.on('data', (data) => {
      for (let at = 0; at < data.length;) {
        const n = 1 + Math.floor(Math.random() * 3000);
        socket.send(data.subarray(at, at + n));
        at += n;
      }
    });
    // A WebSocket has no half-close. As strelay's WebSocket carrier does (docs/protocol.md,
    // "Carriers"): when the relay's side sends its FIN (it carried the other node's), the
    // WebSocket stays open for the node's answer, 5 s at most; when the relay's side is gone
    // altogether, the WebSocket closes at once. The node's close is a FIN toward the relay.
    let linger;
    tcp.on('end', () => { linger = setTimeout(() => socket.close(), 5000); });
    tcp.on('close', () => socket.close());
    socket.on('close', () => { clearTimeout(linger); tcp.end(); });
    const abort = () => { tcp.destroy(); socket.terminate(); };
    socket.on('error', abort);
    tcp.on('error', abort);
  });
  t.after(() => new Promise((resolve) => {
    for (const client of wss.clients) client.terminate();
    wss.close(resolve);
  }));
  return wss.address().port;
}

test('a JS node over WebSocket (ws) and one over TCP: 16 MiB each way through strelay', async (t) => {
  const scene = new Scene(t);
  const relay = await scene.relay('r1');
  const port = await bridge(t, relay.port);
  const alice = scene.identity('alice');
  const bob = scene.identity('bob');
  // The ticket's address is the relay's; the URL option sends the WebSocket to the bridge.
  const listener = new Node({ identity: bob, relays: [relay.ticket], friends: [alice.publicKey],
                              url: () => `ws://127.0.0.1:${port}/strelay`, timers: fast });
  const connector = new Node({ identity: alice, ...carrier_for('tcp'), timers: fast });
  t.after(() => Promise.all([listener.close(), connector.close()]));
  const up = next_event(listener, 'relay', (d) => d.state === 'connected');
  listener.listen();
  await up;
  const incoming = next_event(listener, 'incoming');
  const stream = await connector.connect({ publicKey: bob.publicKey, relays: [relay.ticket] });
  const { stream: accepted } = await incoming;
  const up_data = new Uint8Array(randomBytes(16 << 20));
  const down_data = new Uint8Array(randomBytes(16 << 20));
  const closed = Promise.all([next_event(stream, 'close', () => true, 60_000), next_event(accepted, 'close', () => true, 60_000)]);
  const [at_bob, at_alice] = await Promise.all([exchange(accepted, down_data).catch((e) => { throw new Error(`bob (ws): ${e.message}`); }), exchange(stream, up_data).catch((e) => { throw new Error(`alice (tcp): ${e.message}`); })]);
  assert.equal(at_bob.sha, sha(up_data));
  assert.equal(at_alice.sha, sha(down_data));
  const [end_alice, end_bob] = await closed;
  assert.equal(end_alice.error, null, `alice (tcp): ${end_alice.error?.message}`);
  assert.equal(end_bob.error, null, `bob (ws): ${end_bob.error?.message}`);
});

test('the default WebSocket URL is ws://HOST:PORT/strelay, and an unreachable one is relay_unreachable', async (t) => {
  const scene = new Scene(t);
  const relay = await scene.relay('r1');
  const port = await bridge(t, relay.port);
  const alice = scene.identity('alice');
  // A ticket naming the bridge's address: the default URL finds /strelay there.
  const via_bridge = { publicKey: relay.ticket.publicKey, address: `127.0.0.1:${port}` };
  const node = new Node({ identity: alice, relays: [via_bridge], timers: fast });
  t.after(() => node.close());
  const up = next_event(node, 'relay', (d) => d.state === 'connected');
  node.listen();
  await up;
  const closed_port = { publicKey: relay.ticket.publicKey, address: '127.0.0.1:1' };
  await assert.rejects(node.connect({ publicKey: alice.publicKey, relays: [closed_port] }), { code: 'relay_unreachable' });
});
