// Test support: carriers for JS nodes, fast timers, and a two-way exchange.
import { createHash } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { tcpCarrier } from '../../src/index.js';

// Small timers so that reconnection shows in seconds.
export const fast = { backoff: { initial_ms: 200, cap_ms: 2000 }, connect_timeout_ms: 3000 };

// Node options that pick the carrier: {carrier} for TCP; {url} (and ws options) for WebSocket.
export function carrier_for(kind, relay) {
  if (kind === 'tcp') return { carrier: (ticket) => tcpCarrier(ticket.address, { timeout_ms: 3000 }) };
  if (kind === 'ws') return {};  // the default: ws://HOST:PORT/strelay
  throw new Error(`unknown carrier ${kind}`);
}
// The carriers to test: STRELAY_JS_CARRIERS="tcp ws" (default: both when the relay has WebSocket
// support, which carrier_for.websocket_ready() detects from strelay --help).
carrier_for.kinds = () => (process.env.STRELAY_JS_CARRIERS ?? 'tcp').split(/\s+/).filter(Boolean);
carrier_for.relay_options = () => ({});

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
