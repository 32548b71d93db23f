// Carriers: what carries a strelay connection's bytes. A carrier is a byte stream, whatever
// it runs on (TCP, a WebSocket whose binary messages carry exactly the TCP byte stream):
//
//   await carrier.write(bytes)   resolves when the bytes are accepted under the buffer cap
//   await carrier.read()         the next chunk (Uint8Array), or null at the end of the stream
//   carrier.end()                no more bytes from us (TCP half-close; a WebSocket cannot
//                                half-close, so there it waits for close())
//   carrier.close()              ends the connection at once, both directions
//
// Three implementations: Node's net (TCP), Node's `ws` package, and the browser's WebSocket.
// Node modules are imported only when used, so a browser never loads them.
import { StrelayError } from './errors.js';
import { default_websocket_path, stream_send_buffer_bytes } from './protocol.js';

// Chunks received and not yet read; pauses its source above `high_water` bytes.
export class ChunkQueue {
  constructor({ high_water = 256 * 1024, pause = () => {}, resume = () => {} } = {}) {
    this.chunks = [];
    this.bytes = 0;
    this.ended = false;
    this.error = null;
    this.waiter = null;
    this.high_water = high_water;
    this.pause = pause;
    this.resume = resume;
    this.paused = false;
  }

  push(chunk) {
    if (this.ended || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    if (this.bytes > this.high_water && !this.paused) {
      this.paused = true;
      this.pause();
    }
    this.#wake();
  }

  end(error = null) {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    this.#wake();
  }

  #wake() {
    const waiter = this.waiter;
    this.waiter = null;
    if (waiter) waiter();
  }

  async read() {
    while (this.chunks.length === 0) {
      if (this.ended) return null;
      await new Promise((resolve) => { this.waiter = resolve; });
    }
    const chunk = this.chunks.shift();
    this.bytes -= chunk.length;
    if (this.paused && this.bytes <= this.high_water / 2) {
      this.paused = false;
      this.resume();
    }
    return chunk;
  }
}

// Exact reads over a carrier's chunks; keeps what it read past a request for the next one.
export class ByteReader {
  constructor(carrier) {
    this.carrier = carrier;
    this.pending = [];
    this.pending_bytes = 0;
  }

  // Exactly n bytes, or null at an EOF before the first of them; an EOF after some of them is
  // `aborted` (a truncated stream).
  async read_exact(n) {
    while (this.pending_bytes < n) {
      const chunk = await this.carrier.read();
      if (chunk === null) {
        if (this.pending_bytes === 0) return null;
        throw new StrelayError('aborted', 'the connection ended inside a message');
      }
      this.pending.push(chunk);
      this.pending_bytes += chunk.length;
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const head = this.pending[0];
      const take = Math.min(head.length, n - at);
      out.set(head.subarray(0, take), at);
      at += take;
      if (take === head.length) this.pending.shift();
      else this.pending[0] = head.subarray(take);
    }
    this.pending_bytes -= n;
    return out;
  }

  // The next bytes available, whatever their number (for discarding), or null at EOF.
  async read_some() {
    if (this.pending.length > 0) {
      const head = this.pending.shift();
      this.pending_bytes -= head.length;
      return head;
    }
    return this.carrier.read();
  }
}

// ---------------------------------------------------------------- Node: net (TCP)

export async function tcp_carrier(address, { timeout_ms } = {}) {
  const net = await import('node:net');
  const { host, port } = split_address(address);
  // Half-open: the peer's FIN must not end our sending side (Node's default), so a stream can
  // still answer a close that arrived with the FIN behind it.
  const socket = net.connect({ host, port, noDelay: true, keepAlive: true, allowHalfOpen: true });
  await new Promise((resolve, reject) => {
    const timer = timeout_ms ? setTimeout(() => {
      socket.destroy();
      reject(new StrelayError('relay_unreachable', `${address}: connection timed out`));
    }, timeout_ms) : null;
    socket.once('connect', () => { clearTimeout(timer); resolve(); });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(new StrelayError('relay_unreachable', `${address}: ${e.code ?? e.message}`));
    });
  });
  return new TcpCarrier(socket);
}

export class TcpCarrier {
  constructor(socket) {
    this.socket = socket;
    this.queue = new ChunkQueue({ pause: () => socket.pause(), resume: () => socket.resume() });
    socket.on('data', (chunk) => this.queue.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length)));
    socket.on('end', () => this.queue.end());
    socket.on('close', () => this.queue.end());
    socket.on('error', () => this.queue.end());
  }

  async write(bytes) {
    if (this.socket.destroyed || this.socket.writableEnded) {
      throw new StrelayError('aborted', 'the connection is closed');
    }
    if (!this.socket.write(bytes)) {
      await new Promise((resolve) => {
        const done = () => { this.socket.off('drain', done); this.socket.off('close', done); resolve(); };
        this.socket.on('drain', done);
        this.socket.on('close', done);
      });
    }
  }

  read() { return this.queue.read(); }
  end() { if (!this.socket.destroyed) this.socket.end(); }
  // Ends both directions now; bytes already written still go out (a close frame just sent must
  // not be dropped by destroying the socket under it), for at most a second.
  close() {
    this.queue.end();
    const socket = this.socket;
    if (socket.destroyed) return;
    if (socket.writableLength === 0) {
      socket.destroy();
      return;
    }
    socket.pause();
    socket.end(() => socket.destroy());
    setTimeout(() => socket.destroy(), 1000).unref();
  }
}

// ---------------------------------------------------------------- WebSocket (browser and ws)

// The WebSocket URL of a relay ticket's address: ws://HOST:PORT/strelay, or wss:// when the
// page itself was loaded over https (a browser refuses ws:// from an https page).
export function default_websocket_url(address) {
  const secure = globalThis.location?.protocol === 'https:';
  return `${secure ? 'wss' : 'ws'}://${address}${default_websocket_path}`;
}

// A carrier over any object with the WebSocket API: the browser's, or ws's WebSocket class.
// options.WebSocket picks the class (default: the platform's, else the ws package in Node);
// options.ws_options are passed to ws's constructor (for instance {ca} for a private CA).
export async function websocket_carrier(url, { WebSocket: Class, ws_options, timeout_ms } = {}) {
  if (!Class) Class = globalThis.WebSocket ?? (await import('ws')).WebSocket;
  const is_ws_package = typeof Class.prototype?.pause === 'function';
  const socket = is_ws_package ? new Class(url, ws_options) : new Class(url);
  socket.binaryType = 'arraybuffer';
  const carrier = new WebSocketCarrier(socket, is_ws_package);
  await new Promise((resolve, reject) => {
    const timer = timeout_ms ? setTimeout(() => fail('timed out'), timeout_ms) : null;
    function fail(why) {
      clearTimeout(timer);
      try { socket.close(); } catch { /* already closing */ }
      reject(new StrelayError('relay_unreachable', `${url}: ${why}`));
    }
    socket.addEventListener('open', () => { clearTimeout(timer); resolve(); }, { once: true });
    socket.addEventListener('error', (e) => fail(e?.message ?? 'the WebSocket failed'), { once: true });
    socket.addEventListener('close', () => fail('the WebSocket closed'), { once: true });
  });
  return carrier;
}

export class WebSocketCarrier {
  constructor(socket, is_ws_package) {
    this.socket = socket;
    this.is_ws_package = is_ws_package;
    // ws can stop reading its TCP socket; a browser WebSocket cannot (the queue then grows
    // with what the peer sends, bounded by the peer's own flow: a stream reads as it goes).
    this.queue = new ChunkQueue(is_ws_package
        ? { pause: () => socket.pause(), resume: () => socket.resume() } : {});
    socket.addEventListener('message', (event) => {
      if (event.data instanceof ArrayBuffer) this.queue.push(new Uint8Array(event.data));
      else this.close();  // text messages are no part of the byte stream
    });
    socket.addEventListener('close', () => this.queue.end());
    socket.addEventListener('error', () => this.queue.end());
  }

  async write(bytes) {
    if (this.socket.readyState !== 1) throw new StrelayError('aborted', 'the connection is closed');
    if (this.is_ws_package) {
      await new Promise((resolve, reject) => {
        this.socket.send(bytes, (e) => (e ? reject(new StrelayError('aborted', 'the connection is closed')) : resolve()));
      });
      return;
    }
    this.socket.send(bytes);
    // The browser buffers without limit: wait while more than the cap is unsent.
    while (this.socket.bufferedAmount > stream_send_buffer_bytes && this.socket.readyState === 1) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  read() { return this.queue.read(); }
  end() { /* a WebSocket has no half-close: the stream's own end-of-data frame says it */ }
  close() {
    try { this.socket.close(); } catch { /* already closed */ }
    this.queue.end();
  }
}

// 'host:port' or '[v6]:port' to {host, port} for a socket.
export function split_address(address) {
  const colon = address.lastIndexOf(':');
  let host = address.slice(0, colon);
  if (host.startsWith('[')) host = host.slice(1, -1);
  return { host, port: Number(address.slice(colon + 1)) };
}
