// The browser tests' tools: the real binaries (stmgr, strelay, stcat from STRELAY_BIN_DIR),
// Debian's chromium driven by puppeteer-core at a phone's size with touch, a fake camera that
// shows a QR code (a Y4M video made from a PNG), zbarimg to read QR codes off the screen, and a
// folder of screenshots kept as artefacts.
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, renameSync, existsSync, createWriteStream, readdirSync, statSync, chmodSync, rmSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { PNG } from 'pngjs';
import QRCode from 'qrcode';
import puppeteer from 'puppeteer-core';

const here = dirname(fileURLToPath(import.meta.url));
export const appDir = resolve(here, '..');
export const distDir = join(appDir, 'dist');
const repoRoot = resolve(appDir, '../..');
export const binDir = resolve(process.env.STRELAY_BIN_DIR ?? join(repoRoot, 'build/bin'));
export const artifactsDir = resolve(process.env.STRELAY_APP_ARTIFACTS ?? join(appDir, 'test-artifacts'));
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

export const work = mkdtempSync(join(tmpdir(), 'strelay-app-test-'));
mkdirSync(artifactsDir, { recursive: true });

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

// ------------------------------------------------------------------------------ programs

export function stmgr(...args) {
  return execFileSync(join(binDir, 'stmgr'), args, { cwd: work, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
    server.on('error', reject);
  });
}

const children = new Set();
process.on('exit', () => { for (const child of children) child.kill('SIGKILL'); });

// A child process whose stderr is collected; waitFor(regex) resolves when a line matches.
export function start(program, args, { stdin = 'pipe', stdoutFile } = {}) {
  const child = spawn(join(binDir, program), args, { cwd: work, stdio: [stdin, 'pipe', 'pipe'] });
  children.add(child);
  const proc = { child, stderr: '', stdout: [], exit: null };
  child.stderr.on('data', (d) => { proc.stderr += d; });
  if (stdoutFile) child.stdout.pipe(createWriteStream(stdoutFile));
  else child.stdout.on('data', (d) => proc.stdout.push(d));
  proc.exited = new Promise((r) => child.on('exit', (code, signal) => {
    children.delete(child);
    proc.exit = { code, signal };
    r(proc.exit);
  }));
  proc.stdoutText = () => Buffer.concat(proc.stdout).toString('utf8');
  proc.waitFor = (pattern, what, timeoutMs = 20_000) => until(
    () => pattern.test(proc.stderr) || pattern.test(proc.stdoutText()),
    `${program}: ${what}; its stderr: ${proc.stderr.slice(-800)}`, timeoutMs);
  // The exit status, or a failure naming the program when it does not end in time.
  proc.ended = (timeoutMs = 60_000) => Promise.race([proc.exited, sleep(timeoutMs).then(() => {
    throw new Error(`${program} did not exit within ${timeoutMs / 1000} s; its stderr: ${proc.stderr.slice(-800)}`);
  })]);
  proc.stop = async (signal = 'SIGTERM') => {
    if (!proc.exit) child.kill(signal);
    return proc.exited;
  };
  return proc;
}

export async function until(check, what, timeoutMs = 20_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await sleep(everyMs);
  }
}

export function strelayHelp() {
  try {
    return execFileSync(join(binDir, 'strelay'), ['--help'], { encoding: 'utf8' });
  } catch (error) {
    return String(error.stdout ?? '');
  }
}

// A relay on 127.0.0.1:port, serving the app's files too when strelay has --web-root.
export async function startRelay(ident, port, { webRoot = distDir } = {}) {
  const args = ['--idfile', ident, '--laddr', `127.0.0.1:${port}`];
  if (webRoot) args.push('--web-root', webRoot);
  const relay = start('strelay', args, { stdin: 'ignore' });
  await relay.waitFor(/listening on/, 'the start-up line');
  return relay;
}

// ------------------------------------------------------------------------------ camera

// A Y4M video of one 640x480 frame (4:2:0, what Chromium's fake capture device reads) showing
// the PNG scaled to 90 % of the height, centred on white. A transparent pixel counts as white.
export function pngToY4m(pngBytes, y4mPath) {
  const png = PNG.sync.read(pngBytes);
  const W = 640, H = 480, side = Math.round(H * 0.9);
  const scale = side / Math.max(png.width, png.height);
  const x0 = Math.round((W - png.width * scale) / 2), y0 = Math.round((H - png.height * scale) / 2);
  const luma = Buffer.alloc(W * H, 235);  // white in studio-range Y'
  for (let y = 0; y < H; ++y) {
    for (let x = 0; x < W; ++x) {
      const sx = Math.floor((x - x0) / scale), sy = Math.floor((y - y0) / scale);
      if (sx < 0 || sy < 0 || sx >= png.width || sy >= png.height) continue;
      const i = (sy * png.width + sx) * 4;
      const a = png.data[i + 3] / 255;
      const grey = (png.data[i] * 0.299 + png.data[i + 1] * 0.587 + png.data[i + 2] * 0.114) * a + 255 * (1 - a);
      luma[y * W + x] = Math.round(16 + grey * 219 / 255);
    }
  }
  const chroma = Buffer.alloc((W / 2) * (H / 2) * 2, 128);
  const header = Buffer.from(`YUV4MPEG2 W${W} H${H} F30:1 Ip A1:1 C420jpeg\nFRAME\n`);
  // Written aside and renamed, so Chromium never opens a half-written file.
  writeFileSync(`${y4mPath}.tmp`, Buffer.concat([header, luma, chroma]));
  renameSync(`${y4mPath}.tmp`, y4mPath);
}

export async function textToPng(text) {
  return QRCode.toBuffer(text, { type: 'png', errorCorrectionLevel: 'M', margin: 4, scale: 8 });
}

export function zbar(pngPath) {
  return execFileSync('zbarimg', ['--raw', '-q', pngPath], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).replace(/\n$/, '');
}

// ------------------------------------------------------------------------------ browser

export async function launchBrowser({ camera, profile, downloads }) {
  const browser = await puppeteer.launch({
    executablePath: chromiumPath,
    headless: true,
    userDataDir: profile,
    args: [
      '--no-sandbox', '--disable-background-networking', '--disable-component-update',
      '--disable-default-apps', '--disable-sync', '--no-first-run', '--mute-audio',
      '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      `--use-file-for-fake-video-capture=${camera}`,
    ],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 390, height: 844, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const cdp = await page.createCDPSession();
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads, eventsEnabled: true });
  page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
  return { browser, page };
}

export async function screenshot(page, name) {
  const path = join(artifactsDir, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

export function readText(path) {
  return readFileSync(path, 'utf8');
}

export { existsSync, join, writeFileSync, readFileSync, readdirSync, statSync, chmodSync, rmSync, openSync, mkdirSync };

// ------------------------------------------------------------------------------ static server

// Serves dir over http on 127.0.0.1 (a secure context): "the same files also work from any
// static web server".
export async function staticServer(dir) {
  const http = await import('node:http');
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css',
    '.webmanifest': 'application/manifest+json', '.png': 'image/png', '.svg': 'image/svg+xml' };
  const server = http.createServer((req, res) => {
    let path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (path.endsWith('/')) path += 'index.html';
    const file = join(dir, path);
    if (!file.startsWith(dir) || !existsSync(file)) { res.writeHead(404).end('not found'); return; }
    const ext = path.slice(path.lastIndexOf('.'));
    res.writeHead(200, { 'content-type': types[ext] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() };
}
