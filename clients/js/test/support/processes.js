// Test support: real strelay, stmgr and stcat processes on 127.0.0.1 (binaries from
// STRELAY_BIN_DIR), cleaned up after each test, every wait under a deadline.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Identity, parseRelayTicket } from '../../src/index.js';

export function bin_dir() {
  const dir = process.env.STRELAY_BIN_DIR;
  if (!dir) throw new Error('STRELAY_BIN_DIR must name the directory of the built strelay, stmgr and stcat');
  for (const name of ['strelay', 'stmgr', 'stcat']) {
    if (!existsSync(path.join(dir, name))) throw new Error(`${name} is not in STRELAY_BIN_DIR (${dir})`);
  }
  return dir;
}

const bin = (name) => path.join(bin_dir(), name);

// A scratch directory and the processes of one test; cleanup() kills and removes everything.
export class Scene {
  constructor(t) {
    this.dir = mkdtempSync(path.join(tmpdir(), 'strelay-js-'));
    this.children = new Set();
    t.after(() => this.cleanup());
  }

  file(name) { return path.join(this.dir, name); }

  stmgr(...args) {
    return execFileSync(bin('stmgr'), args, { cwd: this.dir, encoding: 'utf8', timeout: 10_000 });
  }

  // A new identity made by stmgr (the same file format the JS side reads).
  identity(name) {
    this.stmgr('gen-ident', '--output', this.file(`${name}.ident`));
    return Identity.parseFile(readFileSync(this.file(`${name}.ident`), 'utf8'), `${name}.ident`);
  }

  // stop_signal: what cleanup sends first (a wrapper script that must stop its own children
  // gets SIGTERM); SIGKILL follows after 5 s.
  // capture_stdout: collect stdout as text in child.stdout_text (else the caller reads it).
  // group: the child leads a process group of its own, and cleanup signals the whole group
  // (a browser's helper processes outlive their parent's SIGKILL and go on writing its profile).
  spawn(command, args, { stdin = 'ignore', name = path.basename(command), stop_signal = 'SIGKILL', capture_stdout = false, group = false } = {}) {
    const child = spawn(command, args, { cwd: this.dir, stdio: [stdin, 'pipe', 'pipe'], detached: group });
    child.stop_signal = stop_signal;
    child.group = group;
    child.stdout_text = '';
    if (capture_stdout) {
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (d) => { child.stdout_text += d; });
    }
    child.stderr_text = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => { child.stderr_text += d; });
    child.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
    child.label = name;
    child.stdin?.on('error', () => {});  // a child that exits early: its verdict is its exit code
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  // strelay on an ephemeral loopback port; resolves with {ticket, child, port, log()}.
  // binary: another strelay than STRELAY_BIN_DIR's (an older release, say).
  async relay(name, { port = 0, extra = [], binary = bin('strelay') } = {}) {
    if (!existsSync(this.file(`${name}.ident`))) this.stmgr('gen-ident', '--output', this.file(`${name}.ident`));
    const child = this.spawn(binary, [
      '--idfile', this.file(`${name}.ident`), '--laddr', `127.0.0.1:${port}`, '--log-level', 'debug',
      '--handshake-rate', '1000', '--handshake-burst', '1000', ...extra,
    ], { name });
    const line = await wait_for(() => /listening on 127\.0\.0\.1:(\d+)/.exec(child.stderr_text), 10_000, `${name} to listen`);
    const bound = Number(line[1]);
    const ticket_file = this.file(`${name}.relay`);
    if (!existsSync(ticket_file)) {
      this.stmgr('relay-ticket', '--address', `127.0.0.1:${bound}`, '--idfile', this.file(`${name}.ident`), '--output', ticket_file);
    }
    const ticket = parseRelayTicket(readFileSync(ticket_file, 'utf8'), `${name}.relay`);
    return { name, child, port: bound, ticket, ticket_file, log: () => child.stderr_text };
  }

  async stop(child, signal = 'SIGKILL') {
    child.kill(signal);
    await child.exited;
  }

  write(name, text) {
    writeFileSync(this.file(name), text);
    return this.file(name);
  }

  async cleanup() {
    const signal = (child, sig) => {
      try {
        if (child.group) process.kill(-child.pid, sig);
        else child.kill(sig);
      } catch { /* already gone */ }
    };
    await Promise.all([...this.children].map((child) => {
      signal(child, child.stop_signal);
      const force = setTimeout(() => signal(child, 'SIGKILL'), 5000);
      return child.exited.finally(() => clearTimeout(force));
    }));
    // A process that was in a group may take a moment to go after its leader: retry. Never
    // throw here: a failed hook would keep the test's other cleanups (nodes, servers) from
    // running, and the test file would then wait for its time limit.
    try {
      rmSync(this.dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
    } catch (e) {
      console.error(`# scene: ${this.dir} left behind: ${e.message}`);
    }
  }
}

export function stcat_path() { return bin('stcat'); }

// Polls `probe` every 20 ms until it returns a truthy value, for at most `ms`.
export async function wait_for(probe, ms, what) {
  const until = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// Resolves with the first event of `type` on `target` whose detail satisfies `match`.
export function next_event(target, type, match = () => true, ms = 20_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { target.removeEventListener(type, on); reject(new Error(`no ${type} event within ${ms} ms`)); }, ms);
    function on(e) {
      if (!match(e.detail)) return;
      clearTimeout(timer);
      target.removeEventListener(type, on);
      resolve(e.detail);
    }
    target.addEventListener(type, on);
  });
}
