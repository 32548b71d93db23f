// Backoff (sans-io): the C++ library's policy, with a fixed random source.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { ready } from '../src/sodium.js';
import { Backoff } from '../src/backoff.js';

before(ready);

test('ceilings double from initial to the cap; delays are full jitter within them', () => {
  const highest = new Backoff({ initial_ms: 1000, cap_ms: 30000 }, () => 0xffffffff);
  const ceilings = [];
  for (let i = 0; i < 8; ++i) {
    ceilings.push(highest.ceiling());
    const d = highest.next_delay();
    assert.ok(d >= 0 && d <= ceilings[i]);
  }
  assert.deepEqual(ceilings, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  const lowest = new Backoff({}, () => 0);
  assert.equal(lowest.next_delay(), 0);
  const exact = new Backoff({ initial_ms: 1000, cap_ms: 30000 }, () => 1000);
  assert.equal(exact.next_delay(), 1000, 'the ceiling itself can be drawn');
});

test('a connection up for stable_after resets the backoff; a shorter one does not', () => {
  const b = new Backoff({ initial_ms: 100, cap_ms: 1000, stable_after_ms: 500 }, () => 0);
  b.next_delay(); b.next_delay(); b.next_delay();
  b.connection_ended(499);
  assert.equal(b.ceiling(), 800);
  b.connection_ended(500);
  assert.equal(b.ceiling(), 100);
});

test('bad options are refused', () => {
  assert.throws(() => new Backoff({ initial_ms: 0 }), RangeError);
  assert.throws(() => new Backoff({ initial_ms: 2000, cap_ms: 1000 }), RangeError);
});

test('the default random source draws from libsodium and covers the window', () => {
  const b = new Backoff({ initial_ms: 1000, cap_ms: 1000 });
  const draws = Array.from({ length: 200 }, () => b.next_delay());
  assert.ok(draws.every((d) => d >= 0 && d <= 1000));
  assert.ok(Math.min(...draws) < 250 && Math.max(...draws) > 750, 'spread over the whole window');
});
