// The end-to-end stream inside a tunnel (docs/node-library.md, "Inside a tunnel";
// common/stream.*): data frames in order, an empty data frame as the end of data (half-close),
// keepalive pings with the RTT, and an authenticated close that both sides confirm.
//
// One reader loop owns the channel's receive side; write(), end() and the keepalive timer send
// through the channel, whose frames go out in the order they were sealed.
import { StrelayError } from './errors.js';
import { equal_bytes, publicKeyToString } from './keys.js';
import {
  FrameKind, CloseReason, close_reason_names, max_frame_body_bytes, ping_token_bytes,
  keepalive_interval_ms, dead_peer_timeout_ms, stream_receive_buffer_bytes, stream_close_linger_ms,
  write_stall_timeout_ms,
} from './protocol.js';

// What a peer's close reason means for this side (common/stream.cpp).
function error_for_close(reason) {
  switch (reason) {
    case CloseReason.protocol_error: return 'protocol_error';
    case CloseReason.not_allowed: return 'not_allowed';
    case CloseReason.timeout: return 'timeout';
    case CloseReason.dead_peer:
    case CloseReason.peer_gone: return 'peer_gone';
    default: return 'channel_closed';
  }
}

// What this side tells the peer when `code` ends the stream.
function close_reason_for(code) {
  if (code === 'peer_gone') return CloseReason.dead_peer;
  if (code === 'timeout') return CloseReason.timeout;
  return CloseReason.protocol_error;
}

export class Stream extends EventTarget {
  // channel: an authenticated end-to-end Channel (relay_link.js); peer: its key.
  constructor(channel, { keepalive_ms = keepalive_interval_ms, dead_peer_ms = dead_peer_timeout_ms,
                         receive_buffer_bytes = stream_receive_buffer_bytes,
                         close_linger_ms = stream_close_linger_ms,
                         write_stall_ms = write_stall_timeout_ms } = {}) {
    super();
    this.peer = channel.peer;
    this.rtt = null;
    this.bytesSent = 0;
    this.bytesReceived = 0;
    this.#channel = channel;
    this.#options = { keepalive_ms, dead_peer_ms, receive_buffer_bytes, close_linger_ms, write_stall_ms };
    this.#last_received = Date.now();
    this.#reader_done = this.#reader().finally(() => { this.#reader_stopped = true; });
    this.#arm_keepalive();
    this.#ping();  // one at once, so the RTT is known early
  }

  #channel;
  #options;
  #rx = [];
  #rx_bytes = 0;
  #rx_eof = false;
  #rx_waiter = null;
  #space_waiter = null;
  #eof_sent = false;
  #failure = null;       // the error code that ended the stream here
  #peer_closed = false;
  #peer_reason = null;
  #close_request = null;  // our own close: {reason, detail}
  #finished = null;       // the promise of #finish()
  #ended = false;
  #last_received;
  #ping_sent_at = null;
  #outstanding = null;
  #token = 0n;
  #timer = null;
  #reader_done;
  #reader_stopped = false;

  // ------------------------------------------------------------ application side

  // Sends all the bytes (in frames of at most 65518); resolves when the carrier took them
  // under its buffer cap, so a writer faster than the path waits here (backpressure).
  async write(bytes) {
    if (!(bytes instanceof Uint8Array)) throw new TypeError('write() takes a Uint8Array');
    for (let at = 0; at < bytes.length; at += max_frame_body_bytes) {
      this.#check_send();
      const chunk = bytes.subarray(at, Math.min(bytes.length, at + max_frame_body_bytes));
      await this.#send(FrameKind.data, chunk);
      this.bytesSent += chunk.length;
    }
  }

  // The end of our data (half-close): reading goes on.
  async end() {
    if (this.#eof_sent) return;
    this.#check_send();
    this.#eof_sent = true;
    await this.#send(FrameKind.data, new Uint8Array(0));
    this.#maybe_done();
  }

  // The next bytes from the peer, or null once it sent its end of data. Throws the error that
  // ended the stream (a StrelayError) when it ended before the peer's end of data.
  async read() {
    for (;;) {
      if (this.#rx.length > 0) {
        const chunk = this.#rx.shift();
        this.#rx_bytes -= chunk.length;
        if (this.#space_waiter && this.#rx_bytes < this.#options.receive_buffer_bytes) {
          const wake = this.#space_waiter;
          this.#space_waiter = null;
          wake();
        }
        return chunk;
      }
      if (this.#rx_eof) return null;
      const error = this.#read_error();
      if (error) throw error;
      await new Promise((resolve) => { this.#rx_waiter = resolve; });
    }
  }

  async *[Symbol.asyncIterator]() {
    for (let chunk = await this.read(); chunk !== null; chunk = await this.read()) yield chunk;
  }

  // Ends the stream: sends close{reason}, waits (at most the linger) for the peer's close, and
  // resolves with the outcome {reason, error} (error null when the peer confirmed a clean end).
  close(reason = 'normal', detail = '') {
    if (!this.#close_request && !this.#ended) {
      const code = typeof reason === 'number' ? reason : CloseReason[reason] ?? CloseReason.normal;
      this.#close_request = { reason: code, detail };
    }
    return this.#finish();
  }

  get closed() { return this.#ended; }

  toString() { return `[strelay Stream ${publicKeyToString(this.peer)}]`; }

  // ------------------------------------------------------------ internals

  #check_send() {
    const error = this.#send_error();
    if (error) throw error;
  }

  #send_error() {
    if (this.#failure) return new StrelayError(this.#failure, `the stream ended: ${this.#failure}`);
    if (this.#peer_closed && this.#peer_reason !== CloseReason.normal) {
      const code = error_for_close(this.#peer_reason);
      return new StrelayError(code, `the peer closed: ${close_reason_names[this.#peer_reason]}`);
    }
    if (this.#peer_closed || this.#eof_sent || this.#close_request || this.#ended) {
      return new StrelayError('channel_closed', 'the stream is closed for writing');
    }
    return null;
  }

  #read_error() {
    if (this.#failure) return new StrelayError(this.#failure, `the stream ended: ${this.#failure}`);
    if (this.#peer_closed) {
      const code = error_for_close(this.#peer_reason);
      return new StrelayError(code, `the peer closed before its end of data (${close_reason_names[this.#peer_reason]})`);
    }
    if (this.#ended) return new StrelayError('channel_closed', 'the stream is closed');
    return null;
  }

  async #send(kind, body) {
    let stall;
    try {
      // A frame the path does not take within the stall limit ends the stream (timeout).
      await Promise.race([this.#channel.send(kind, body), new Promise((_, reject) => {
        stall = setTimeout(() => reject(new StrelayError('timeout', 'the path took no bytes')), this.#options.write_stall_ms);
      })]);
    } catch (e) {
      // Ending already (our close, the peer's, or a failure): the stream's outcome stands.
      if (this.#close_request || this.#peer_closed || this.#failure || this.#ended) {
        throw this.#send_error() ?? e;
      }
      if (e?.code === 'timeout') {
        this.#fail('timeout');
        throw this.#send_error() ?? e;
      }
      this.#fail(e?.code === 'channel_closed' ? 'channel_closed' : 'aborted', true);
      throw this.#send_error() ?? e;
    } finally {
      clearTimeout(stall);
    }
  }

  #wake_reader_app() {
    const wake = this.#rx_waiter;
    this.#rx_waiter = null;
    wake?.();
  }

  async #reader() {
    for (;;) {
      if (this.#rx_bytes >= this.#options.receive_buffer_bytes && !this.#close_request) {
        // Backpressure: stop reading the tunnel until the application reads.
        await new Promise((resolve) => { this.#space_waiter = resolve; });
        continue;
      }
      let message;
      try {
        message = await this.#channel.receive();
      } catch (e) {
        if (this.#ended) return;
        if (e?.code === 'aborted') {
          if (!this.#close_request) this.#fail('aborted', true);
          else this.#end();
        } else {
          this.#fail(e?.code ?? 'protocol_error');
        }
        return;
      }
      this.#last_received = Date.now();
      if (!this.#handle(message)) return;
    }
  }

  // Returns false when the reader must stop.
  #handle(message) {
    switch (message.kind) {
      case FrameKind.data:
        if (this.#rx_eof) {
          this.#fail('protocol_error');
          return false;
        }
        if (message.body.length === 0) {
          this.#rx_eof = true;
          this.#maybe_done();
        } else if (!this.#close_request) {
          this.#rx.push(message.body);
          this.#rx_bytes += message.body.length;
          this.bytesReceived += message.body.length;
        }
        this.#wake_reader_app();
        return true;
      case FrameKind.ping:
        this.#channel.send(FrameKind.pong, message.body).catch(() => {});
        return true;
      case FrameKind.pong:
        if (this.#outstanding && equal_bytes(this.#outstanding.bytes, message.body)) {
          this.rtt = Date.now() - this.#outstanding.at;
          this.#outstanding = null;
          this.dispatchEvent(new CustomEvent('rtt', { detail: { rtt: this.rtt } }));
        }
        return true;
      case FrameKind.close:
        this.#peer_closed = true;
        this.#peer_reason = message.close_reason;
        this.#wake_reader_app();
        this.#finish();  // answers with our own close{normal} and ends
        return false;
      default:  // control frames belong to the relay hop, never to a stream
        this.#fail('protocol_error');
        return false;
    }
  }

  // Both directions finished: nothing is left to say but the close.
  #maybe_done() {
    if (this.#eof_sent && this.#rx_eof && !this.#close_request && !this.#failure) this.close('normal');
  }

  #ping() {
    const bytes = new Uint8Array(ping_token_bytes);
    new DataView(bytes.buffer).setBigUint64(0, ++this.#token);
    const now = Date.now();
    this.#ping_sent_at = now;
    this.#outstanding = { bytes, at: now };
    this.#channel.send(FrameKind.ping, bytes).catch(() => {});
  }

  #arm_keepalive() {
    const { keepalive_ms, dead_peer_ms } = this.#options;
    const step = Math.max(10, Math.min(keepalive_ms, dead_peer_ms) / 4);
    this.#timer = setTimeout(() => {
      if (this.#ended || this.#close_request || this.#failure) return;
      const now = Date.now();
      // Bytes waiting for the application prove the peer alive.
      if (this.#rx_bytes >= this.#options.receive_buffer_bytes) this.#last_received = now;
      if (now - this.#last_received >= dead_peer_ms) {
        this.#fail('peer_gone');
        return;
      }
      const since = Math.max(this.#last_received, this.#ping_sent_at ?? 0);
      if (now - since >= keepalive_ms) this.#ping();
      this.#arm_keepalive();
    }, step);
  }

  #fail(code, send_dead = false) {
    if (this.#ended) return;
    if (!this.#failure) this.#failure = code;
    this.#send_dead = this.#send_dead || send_dead;
    this.#wake_reader_app();
    this.#finish();
  }

  #send_dead = false;

  // The one way out: say why (when the channel can still say anything), let the peer finish,
  // close the carrier, report the end.
  #finish() {
    if (this.#finished) return this.#finished;
    this.#finished = (async () => {
      clearTimeout(this.#timer);
      this.#space_waiter?.();  // a reader paused for backpressure reads on, discarding
      let reason = CloseReason.normal;
      let detail = '';
      if (this.#close_request) {
        ({ reason, detail } = this.#close_request);
      } else if (this.#failure) {
        reason = close_reason_for(this.#failure);
        if (this.#failure === 'decrypt_failed') detail = 'a frame failed to authenticate';
      }
      if (!this.#send_dead) {
        await Promise.race([this.#channel.send_close(reason, detail),
                            new Promise((r) => setTimeout(r, this.#options.close_linger_ms))]);
        // No half-close (FIN) here, unlike the C++ stream: a relay that carries our FIN to a
        // peer on a WebSocket must close that WebSocket (it has no half-close), which would
        // keep the peer from answering with its own close. The carrier closes at the end.
        // Linger: wait for the peer's close or EOF, so ours is not turned into a reset that
        // destroys its last frames (or our close) in flight: through the reader while it runs,
        // else by reading and discarding.
        if (!this.#peer_closed) await this.#linger(Date.now() + this.#options.close_linger_ms);
      }
      return this.#end();
    })();
    return this.#finished;
  }

  async #linger(until) {
    const timeout = () => new Promise((r) => setTimeout(r, Math.max(0, until - Date.now())));
    if (!this.#reader_stopped) {
      await Promise.race([this.#reader_done, timeout()]);
      if (!this.#reader_stopped) return;
    }
    while (Date.now() < until) {
      const chunk = await Promise.race([this.#channel.reader.read_some().catch(() => null), timeout().then(() => null)]);
      if (chunk === null) return;
    }
  }

  #end() {
    if (this.#ended) return this.#outcome_detail();
    this.#ended = true;
    clearTimeout(this.#timer);
    this.#channel.close();
    this.#space_waiter?.();
    this.#wake_reader_app();
    const detail = this.#outcome_detail();
    this.dispatchEvent(new CustomEvent('close', { detail }));
    return detail;
  }

  // How the stream ended (common/stream.cpp outcome()): a clean end needs the peer's own
  // close{normal}, after its end of data or in answer to ours.
  #outcome_code() {
    if (this.#failure) return this.#failure;
    if (!this.#peer_closed) return 'aborted';
    if (this.#peer_reason !== CloseReason.normal) return error_for_close(this.#peer_reason);
    if (!this.#rx_eof && !this.#close_request) return 'channel_closed';
    return null;
  }

  #outcome_detail() {
    const code = this.#outcome_code();
    const reason = this.#peer_closed ? close_reason_names[this.#peer_reason]
        : this.#close_request ? close_reason_names[this.#close_request.reason] : 'aborted';
    return { reason, error: code ? new StrelayError(code, `the stream ended: ${code}`) : null };
  }
}
