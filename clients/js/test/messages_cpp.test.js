// The control message decoder against the C++ one (common/messages.cpp), message by message:
// the seeds of fuzz/corpus/messages, hostile messages at each reader limit, and thousands of
// random mutations. Both must accept the same messages (as the same member) and refuse the
// rest. The C++ side is a small program built against libstrelay_common of the build whose
// bin/ is STRELAY_BIN_DIR.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ready } from '../src/sodium.js';
import { decode_node_message, decode_relay_message, NodeMessageKind, RelayMessageKind } from '../src/messages.js';
import { repo_root, read_repo_file } from './support/vectors.js';
import { bin_dir } from './support/processes.js';

before(ready);

function build_cpp_decoder(t) {
  const build = path.dirname(bin_dir());
  const libs = ['common/libstrelay_core.a', 'schema/libstrelay_schema.a'].map((l) => path.join(build, l));
  for (const lib of libs) assert.ok(existsSync(lib), `${lib} exists (STRELAY_BIN_DIR is a build's bin/)`);
  const dir = mkdtempSync(path.join(tmpdir(), 'strelay-decode-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'decode_control');
  execFileSync('c++', ['-std=c++20', '-O1', `-I${repo_root}`, `-I${path.join(build, 'schema')}`,
                       path.join(repo_root, 'clients/js/test/support/decode_control.cpp'), ...libs,
                       '-lcapnp', '-lkj', '-lsodium', '-o', out], { timeout: 120_000 });
  return out;
}

function cpp_verdicts(program, root, messages) {
  const input = messages.map((m) => Buffer.from(m).toString('hex')).join('\n') + '\n';
  const names = Object.keys(root === 'node' ? NodeMessageKind : RelayMessageKind);
  return execFileSync(program, [root], { input, maxBuffer: 64 << 20 }).toString().trim().split('\n')
      .map((line) => (line.startsWith('ok ') ? `ok ${names[Number(line.slice(3))]}` : line));
}

function js_verdict(root, bytes) {
  try {
    return `ok ${(root === 'node' ? decode_node_message : decode_relay_message)(bytes).type}`;
  } catch (e) {
    assert.equal(e.code, 'protocol_error');
    return 'refused';
  }
}

// Hostile messages at each reader limit and one past it (segment words as [lo, hi] u32 pairs).
function message(words) {
  const out = new Uint8Array(8 + words.length * 8);
  const view = new DataView(out.buffer);
  view.setUint32(4, words.length, true);
  words.forEach(([lo, hi], i) => {
    view.setUint32(8 + i * 8, lo >>> 0, true);
    view.setUint32(12 + i * 8, hi >>> 0, true);
  });
  return out;
}
const off = (o) => ((o << 2) >>> 0);
function limit_cases() {
  const out = [];
  for (let n = 2030; n <= 2042; ++n) out.push(message([[0, 0x00020001], [0, 0], [0xfffffffc, 0], [1, (n << 3) >>> 0]]));
  for (let n = 2030; n <= 2042; ++n) out.push(message([[0, 0x00020001], [0, 0], [0xfffffffc, 0], [1, 7], [n << 2, 0]]));
  for (let p = 220; p <= 230; ++p) {
    const words = [[0, 0x00020001], [0, 0], [0xfffffffc, 0], [0, (p << 16) >>> 0]];
    for (let i = 0; i < p; ++i) words.push([off(p - i - 1), 8]);
    out.push(message([...words, ...Array(8).fill([0, 0])]));
  }
  for (let n = 5; n <= 9; ++n) {
    out.push(message([[0, 0x00010001], [0, 0], ...Array(n - 2).fill([0, 0x00010000]), [0xfffffffc, 0]]));
    out.push(message([[0, 0x00020001], [0, 0], [0xfffffffc, 0], ...Array(n).fill([1, (1 << 3) | 6]), [0xfffffffc, 0]]));
    const composite = [[0, 0x00020001], [0, 0], [0xfffffffc, 0]];
    for (let i = 0; i < n - 3; ++i) composite.push([1, (2 << 3) | 7], [1 << 2, 0x00010000]);
    out.push(message([...composite, [0xfffffffc, 0]]));
  }
  out.push(message([[0, 0]]), message([[0, 0x00010000], [0xfffffffc, 0]]));
  out.push(message([[2 | (1 << 3), 0], [0, 0x00010001], [0, 0], [0, 0]]));
  out.push(message([[6 | (1 << 3), 0], [2 | (3 << 3), 0], [0, 0x00010001], [0, 0], [0, 0]]));
  out.push(message([[2 | (1 << 3), 1], [0, 0x00010001], [0, 0], [0, 0]]), message([[2 | (9 << 3), 0], [0, 0]]));
  out.push(message([[0, 0x00010001], [0, 0], [off(-64), 0]]), message([[0, 0x00020001], [0, 0], [0xfffffffc, 0], [3, 0]]));
  out.push(message([[0, 0x00020001], [0, 0], [0xfffffffc, 0], [off(100) | 1, (5 << 3)]]));
  out.push(message([[0, 0x00020001], [0, 0], [0xfffffffc, 0], [off(100) | 1, (1 << 3) | 2]]));
  return out;
}

test('the JS and C++ decoders agree on seeds, limits and 6,000 random mutations', (t) => {
  const program = build_cpp_decoder(t);
  const dir = path.join(repo_root, 'fuzz/corpus/messages');
  const cases = { node: [], relay: [] };
  for (const file of readdirSync(dir)) {
    const seed = new Uint8Array(read_repo_file(`fuzz/corpus/messages/${file}`));
    const root = file.startsWith('node') ? 'node' : 'relay';
    cases[root].push(seed);
    for (let i = 0; i < 550; ++i) {  // bounded: one process reads them all
      const bytes = Uint8Array.from(seed);
      const noise = randomBytes(8);
      for (let j = 0; j <= noise[0] % 3; ++j) {
        const at = 8 + (noise[1 + j * 2] * 256 + noise[2 + j * 2]) % (bytes.length - 8);
        bytes[at] = noise[7] & 3 ? bytes[at] ^ (1 << (noise[6] % 8)) : noise[5];
      }
      cases[root].push(bytes);
    }
  }
  cases.node.push(...limit_cases());
  cases.relay.push(...limit_cases());
  let accepted = 0;
  for (const root of ['node', 'relay']) {
    const cpp = cpp_verdicts(program, root, cases[root]);
    assert.equal(cpp.length, cases[root].length);
    cases[root].forEach((bytes, i) => {
      const js = js_verdict(root, bytes);
      if (js.startsWith('ok')) ++accepted;
      assert.equal(js, cpp[i], `${root} message ${Buffer.from(bytes).toString('hex')}`);
    });
  }
  assert.ok(accepted > 100, `both sides accepted some mutations (${accepted})`);
});
