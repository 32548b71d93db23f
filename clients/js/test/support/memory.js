// Test support: two carriers joined in memory, and a pair of end-to-end channels over them.
import { ChunkQueue, ByteReader } from '../../src/carrier.js';
import { initiate, respond } from '../../src/relay_link.js';
import { Identity } from '../../src/index.js';
import { end_to_end_domain } from '../../src/protocol.js';

class MemoryCarrier {
  constructor() {
    this.queue = new ChunkQueue();
    this.peer = null;
    this.closed = false;
  }
  async write(bytes) {
    if (this.closed || this.peer.closed) throw Object.assign(new Error('closed'), { code: 'aborted' });
    this.peer.queue.push(Uint8Array.from(bytes));
  }
  read() { return this.queue.read(); }
  end() { this.peer.queue.end(); }
  close() {
    this.closed = true;
    this.queue.end();
    this.peer.queue.end();
  }
}

export function carrier_pair() {
  const a = new MemoryCarrier();
  const b = new MemoryCarrier();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

// {alice, bob}: end-to-end Channels (alice the initiator), and their identities.
export async function channel_pair() {
  const [ca, cb] = carrier_pair();
  const alice_id = Identity.generate();
  const bob_id = Identity.generate();
  const ra = new ByteReader(ca);
  const rb = new ByteReader(cb);
  const [alice, { channel: bob }] = await Promise.all([
    initiate(ca, ra, { identity: alice_id, responder_key: bob_id.publicKey, payload: new Uint8Array(0), domain: end_to_end_domain }),
    respond(cb, rb, { identity: bob_id, domain: end_to_end_domain }),
  ]);
  return { alice, bob, alice_id, bob_id };
}
