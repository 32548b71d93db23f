// Reconnection delays, sans-io, with the C++ library's policy (common/backoff.*):
//   ceiling(n) = min(cap, initial * 2^n),  delay(n) = uniform in [0, ceiling(n)]  (full jitter)
// n counts failed attempts since the last reset; a connection that stayed up for stable_after
// resets it.
import { sodium } from './sodium.js';
import {
  node_backoff_initial_ms, node_backoff_cap_ms, node_backoff_stable_after_ms,
} from './protocol.js';

function sodium_random() {
  const bytes = sodium().randombytes_buf(4);
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0);
}

export class Backoff {
  constructor({ initial_ms = node_backoff_initial_ms, cap_ms = node_backoff_cap_ms,
                stable_after_ms = node_backoff_stable_after_ms } = {}, random = sodium_random) {
    if (!(initial_ms > 0) || cap_ms < initial_ms) throw new RangeError('backoff: need 0 < initial <= cap');
    this.initial_ms = initial_ms;
    this.cap_ms = cap_ms;
    this.stable_after_ms = stable_after_ms;
    this.random = random;
    this.attempts = 0;
  }

  ceiling() {
    let bound = this.initial_ms;
    for (let i = 0; i < this.attempts && bound < this.cap_ms; ++i) bound *= 2;
    return Math.min(bound, this.cap_ms);
  }

  next_delay() {
    const bound = this.ceiling();
    if (this.attempts < 64) ++this.attempts;
    return this.random() % (bound + 1);
  }

  connection_ended(up_for_ms) {
    if (up_for_ms >= this.stable_after_ms) this.reset();
  }

  reset() { this.attempts = 0; }
}
