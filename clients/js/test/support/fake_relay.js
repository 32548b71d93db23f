// Test support: a relay made of the library's own responder, scripted by the test. Every
// connection's first request (in msg3) and every later frame is recorded; a listener gets
// ListenOk, then `on_listen(connection)`; each later control message goes to
// `on_message(connection, decoded)`, which answers with connection.send(message) or ends it with
// connection.close(reason). Pings are answered unless answer_pings is false (a relay gone
// silent).
import net from 'node:net';
import { ByteReader, TcpCarrier } from '../../src/carrier.js';
import { respond } from '../../src/relay_link.js';
import { close_body } from '../../src/transport.js';
import { encode_relay_message, decode_node_message } from '../../src/messages.js';
import { FrameKind, hop_domain } from '../../src/protocol.js';
import { Identity } from '../../src/index.js';
import { wait_for } from './processes.js';

class FakeConnection {
  constructor(channel, request) {
    this.channel = channel;
    this.request = request;
    this.received = [];  // decoded control messages, and {type: 'close', reason} at the end
    this.frames = [];    // the kind of every frame, in order
    this.pongs = 0;
  }

  send(message) {
    return this.channel.send(FrameKind.control, encode_relay_message(message));
  }

  async close(reason) {
    await this.channel.send(FrameKind.close, close_body(reason)).catch(() => {});
    this.channel.close();
  }

  // A ping, resolved when its pong is back: everything the node sent before answering it has
  // been received (one connection keeps order), so a test can tell what was *not* sent.
  async sync(ms = 5000) {
    const before = this.pongs;
    await this.channel.send(FrameKind.ping, Uint8Array.of(0, 0, 0, 0, 0, 0, 0, before + 1));
    await wait_for(() => this.pongs > before, ms, 'the pong');
  }

  of_type(type) {
    return this.received.filter((m) => m.type === type);
  }
}

export async function fake_relay(t, { on_message = default_answers, on_listen = () => {}, answer_pings = true } = {}) {
  const identity = Identity.generate();
  const connections = [];
  const sockets = new Set();
  const server = net.createServer(async (socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    const carrier = new TcpCarrier(socket);
    try {
      const { channel, payload } = await respond(carrier, new ByteReader(carrier), { identity, domain: hop_domain });
      const connection = new FakeConnection(channel, decode_node_message(payload));
      connections.push(connection);
      if (connection.request.type === 'listen') {
        await connection.send({ type: 'listenOk' });
        await on_listen(connection);
      }
      for (;;) {
        const frame = await channel.receive();
        connection.frames.push(frame.kind);
        if (frame.kind === FrameKind.pong) {
          ++connection.pongs;
        } else if (frame.kind === FrameKind.control) {
          const decoded = decode_node_message(frame.body);
          connection.received.push(decoded);
          await on_message(connection, decoded);
        } else if (frame.kind === FrameKind.ping) {
          if (answer_pings) await channel.send(FrameKind.pong, frame.body);
        } else {
          connection.received.push({ type: 'close', reason: frame.close_reason });
          break;
        }
      }
    } catch { /* the node went away */ }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(resolve); }));
  const ticket = { publicKey: identity.publicKey, address: `127.0.0.1:${server.address().port}` };
  const listeners = () => connections.filter((c) => c.request.type === 'listen');
  return { ticket, connections, listeners };
}

// A relay that has every topic to itself: joined with nobody, left at once.
export async function default_answers(connection, message) {
  if (message.type === 'joinTopic') {
    await connection.send({ type: 'topicJoined', topicId: message.topicId, members: 0, introduced: 0 });
  } else if (message.type === 'leaveTopic') {
    await connection.send({ type: 'topicLeft', topicId: message.topicId });
  }
}
