// The phone app in a real browser (Debian's chromium, headless, 390x844 with touch), against
// the real stmgr, strelay and stcat. One app and one browser profile go through the user's
// whole story in order: the relay scanned from `stmgr qr --png` through the fake camera, a
// friend scanned the same way, text and files both ways with stcat, the app's own ticket read
// off the screen, and the failures a person meets. Screenshots land in test-artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as H from './harness.mjs';
import * as P from './page.mjs';

const { join, work } = H;
const TWO_MIB = 2 * 1024 * 1024;
let relay, relay2, port, port2, pageUrl, server, browser, page, camera, downloads, myKey;

const f = (name) => join(work, name);
const showQr = async (pngBytes) => H.pngToY4m(pngBytes, camera);
const showTicketQr = async (ticketFile) => {
  H.stmgr('qr', ticketFile, '--png', `${ticketFile}.png`);
  return showQr(H.readFileSync(f(`${ticketFile}.png`)));
};
const newIdent = (name) => { H.stmgr('gen-ident', '--output', `${name}.ident`); return `${name}.ident`; };
const friendTicket = (name, ...relays) => {
  H.stmgr('friend-ticket', '--idfile', `${name}.ident`, ...relays.flatMap((r) => ['--relay', r]),
    '--output', `${name}.friend`);
  return `${name}.friend`;
};
const newestDownload = async (what) => {
  let found = null;
  await H.until(() => {
    const names = H.readdirSync(downloads).filter((n) => !n.endsWith('.crdownload'));
    found = names.length ? join(downloads, names.sort().pop()) : null;
    return found;
  }, what);
  return found;
};

before(async () => {
  H.mkdirSync(f('relay'));
  downloads = f('downloads');
  H.mkdirSync(downloads);
  port = await H.freePort();
  H.stmgr('gen-ident', '--output', 'relay/relay.ident');
  H.stmgr('relay-ticket', '--address', `127.0.0.1:${port}`, '--idfile', 'relay/relay.ident',
    '--output', 'relay/relay.relay');
  // strelay serves the app itself when it can (GET / on the relay's port); otherwise any
  // static server does, which is the other way the app is documented to run.
  const webRoot = /--web-root/.test(H.strelayHelp());
  relay = await H.startRelay('relay/relay.ident', port, { webRoot: webRoot ? H.distDir : null });
  if (webRoot) {
    pageUrl = `http://127.0.0.1:${port}/`;
  } else {
    server = await H.staticServer(H.distDir);
    pageUrl = server.url;
  }
  console.log(`# app served from ${pageUrl} (${webRoot ? 'strelay --web-root' : 'a static server'})`);
  camera = f('camera.y4m');
  await showQr(await H.textToPng('nothing to see yet'));
  ({ browser, page } = await H.launchBrowser({ camera, profile: f('profile'), downloads }));
});

after(async () => {
  await browser?.close();
  server?.close();
  await relay?.stop();
  await relay2?.stop();
});

test('the app opens at phone width with a fresh identity, and fits the screen', async () => {
  await page.goto(pageUrl);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 20_000 });
  await P.screen(page, 'me');
  myKey = await P.textOf(page, '#my-key');
  assert.match(myKey, /^[A-Za-z0-9_-]{43}$/, 'the app shows its public key');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(overflow <= 390, `the page is ${overflow} px wide on a 390 px screen`);
  // Every control has a name a screen reader can say.
  const unnamed = await page.evaluate(() => [...document.querySelectorAll('button, input, textarea, select')]
    .filter((e) => !e.hidden && !(e.labels?.length || e.getAttribute('aria-label') || e.innerText.trim()))
    .map((e) => e.outerHTML.slice(0, 80)));
  assert.deepEqual(unnamed, []);
});

test('a QR code that is not a ticket is refused with a reason, and scanning goes on', async () => {
  await showQr(await H.textToPng('https://example.org/not-a-ticket'));
  await P.scan(page, 'relays');
  await P.waitText(page, '#scan-status', /not a strelay ticket/, 'the scan says it is not a ticket');
  await H.screenshot(page, 'scan-not-a-ticket');
  await P.tap(page, '#scan-cancel');
  assert.equal(await page.$eval('#relay-list', (e) => e.querySelectorAll('li.card').length), 0);
});

test('scanning the relay ticket from stmgr qr --png adds the relay, and it connects', async () => {
  await showTicketQr('relay/relay.relay');
  await P.scan(page, 'relays');
  await page.waitForSelector('#scan-dialog:not([open])', { timeout: 20_000 });
  await P.waitRelay(page, `127.0.0.1:${port}`, /^Connected/, 'connected');
  await H.screenshot(page, 'relays');
  await P.screen(page, 'me');
  await P.waitText(page, '#my-relays', new RegExp(`127\\.0\\.0\\.1:${port}`), 'the ticket lists the relay');
  await H.screenshot(page, 'me');
});

test('the exported identity is an Offset identity file with the key shown', async () => {
  await P.screen(page, 'me');
  await P.tap(page, '#export-ident');
  const file = await newestDownload('the identity download');
  assert.match(H.readFileSync(file, 'utf8'), /^\{\n {2}"privateKey": "[A-Za-z0-9_-]{43}"\n\}$/);
  H.chmodSync(file, 0o600);
  assert.equal(H.stmgr('pubkey', '--idfile', file).trim(), myKey);
  H.rmSync(file);
});

let bob;
test('a friend scanned from stcat\'s ticket: text lines both ways with stcat listen', async () => {
  newIdent('bob');
  friendTicket('bob', 'relay/relay.relay');
  bob = H.start('stcat', ['listen', '--idfile', 'bob.ident', '--relay', 'relay/relay.relay',
    '--allow', myKey, '-v']);
  await bob.waitFor(/listening on relay/, 'listening');
  await showTicketQr('bob.friend');
  await P.scan(page, 'friends');
  await page.waitForSelector('#scan-dialog:not([open])', { timeout: 20_000 });
  await P.waitText(page, '#friend-list', /Friend /, 'the friend card');
  await H.screenshot(page, 'friends');
  await P.talkTo(page, /Friend /);
  await P.waitText(page, '#talk-log', /Connected to/, 'connected');
  await P.say(page, 'hello from the phone');
  await H.until(() => bob.stdoutText() === 'hello from the phone\n', 'stcat prints the line');
  bob.child.stdin.write('hello from the laptop\n');
  await P.waitText(page, '#talk-log', /hello from the laptop/, 'the laptop\'s line');
  await H.screenshot(page, 'talk');
  bob.child.stdin.end();
  await P.waitText(page, '#talk-log', /They finished sending/, 'their end of data');
  await P.tap(page, '#talk-finish');
  assert.deepEqual(await bob.ended(), { code: 0, signal: null }, bob.stderr);
  await P.waitText(page, '#talk-log', /Conversation ended normally/, 'a clean end');
});

test('a 2 MiB file from the app reaches stcat > file intact', async () => {
  const data = randomBytes(TWO_MIB);
  H.writeFileSync(f('to-laptop.bin'), data);
  bob = H.start('stcat', ['listen', '--idfile', 'bob.ident', '--relay', 'relay/relay.relay',
    '--allow', myKey, '-v'], { stdin: 'ignore', stdoutFile: f('received-by-laptop.bin') });
  await bob.waitFor(/listening on relay/, 'listening');
  await P.talkTo(page, /Friend /);
  await P.waitText(page, '#talk-log', /Connected to/, 'connected');
  await P.chooseFile(page, '#talk-file', f('to-laptop.bin'));
  await P.waitText(page, '#talk-progress-text', /Sending to-laptop\.bin/, 'progress shown', 10_000)
    .catch(() => {});  // a fast machine may finish before the first look
  await P.waitText(page, '#talk-log', /Sent to-laptop\.bin: 2\.00 MiB/, 'the file sent', 60_000);
  assert.deepEqual(await bob.ended(), { code: 0, signal: null }, bob.stderr);
  await H.until(() => H.statSync(f('received-by-laptop.bin')).size === TWO_MIB, 'the whole file on disk');
  assert.equal(H.sha256(H.readFileSync(f('received-by-laptop.bin'))), H.sha256(data));
});

test('a 2 MiB file from stcat < file reaches the app intact and is saved', async () => {
  const data = randomBytes(TWO_MIB);
  H.writeFileSync(f('to-phone.bin'), data);
  bob = H.start('stcat', ['listen', '--idfile', 'bob.ident', '--relay', 'relay/relay.relay',
    '--allow', myKey, '-v'], { stdin: H.openSync(f('to-phone.bin'), 'r') });
  await bob.waitFor(/listening on relay/, 'listening');
  await P.talkTo(page, /Friend /);
  await P.waitText(page, '#talk-progress-text', /Received 2\.00 MiB \(complete\)/, 'all received', 60_000);
  await H.screenshot(page, 'talk-file-received');
  await P.tap(page, '#talk-save');
  const saved = await newestDownload('the saved file');
  await H.until(() => H.statSync(saved).size === TWO_MIB, 'the whole download');
  assert.equal(H.sha256(H.readFileSync(saved)), H.sha256(data));
  await P.tap(page, '#talk-finish');
  assert.deepEqual(await bob.ended(), { code: 0, signal: null }, bob.stderr);
});

test('the app\'s own friend ticket, read off the screen with zbarimg, lets stcat connect reach it', async () => {
  newIdent('carol');
  await P.paste(page, 'friends', H.readFileSync(f(friendTicket('carol', 'relay/relay.relay')), 'utf8'));
  await P.waitText(page, '#notices', /Added Friend/, 'carol added');
  await P.screen(page, 'me');
  await P.shootElement(page, '#my-qr', f('app-qr.png'));
  const ticket = H.zbar(f('app-qr.png'));
  assert.equal(JSON.parse(ticket).publicKey, myKey);
  H.writeFileSync(f('app.friend'), ticket);
  const carol = H.start('stcat', ['connect', '--idfile', 'carol.ident', '--to', 'app.friend', '-v']);
  await P.waitText(page, '#talk-log', /connected to you/, 'the incoming conversation');
  carol.child.stdin.write('hi phone, this is carol\n');
  await P.waitText(page, '#talk-log', /hi phone, this is carol/, 'carol\'s line');
  await P.say(page, 'hi carol');
  await H.until(() => carol.stdoutText() === 'hi carol\n', 'carol reads the line');
  carol.child.stdin.end();
  await P.waitText(page, '#talk-log', /They finished sending/, 'carol\'s end');
  await P.tap(page, '#talk-finish');
  assert.deepEqual(await carol.ended(), { code: 0, signal: null }, carol.stderr);
});

test('a stranger\'s stcat connect is refused, and the app says so', async () => {
  newIdent('mallory');
  const mallory = H.start('stcat', ['connect', '--idfile', 'mallory.ident', '--to', 'app.friend'],
    { stdin: 'ignore' });
  const exit = await mallory.ended();
  assert.notEqual(exit.code, 0, 'the stranger does not get through');
  await P.waitText(page, '#notices', /Refused a connection from a stranger/, 'the refusal notice');
  await P.screen(page, 'friends');
  await P.waitText(page, '#refused-list', /not a friend/, 'the refused list');
  await H.screenshot(page, 'refused-stranger');
});

test('a relay ticket whose key does not match the relay is shown as the wrong relay', async () => {
  newIdent('impostor');
  H.stmgr('relay-ticket', '--address', `localhost:${port}`, '--idfile', 'impostor.ident',
    '--output', 'impostor.relay');
  await P.paste(page, 'relays', H.readFileSync(f('impostor.relay'), 'utf8'));
  await P.waitRelay(page, `localhost:${port}`, /Wrong relay/, 'identity mismatch');
  await H.screenshot(page, 'relay-wrong-key');
  await P.tap(page, `#relay-list li[data-address="localhost:${port}"] button.remove`);
  await H.until(async () => !(await page.$(`#relay-list li[data-address="localhost:${port}"]`)), 'removed');
});

test('the relay stopped: the app says it is retrying, and recovers when it is back', async () => {
  await P.screen(page, 'relays');
  await relay.stop();
  await P.waitRelay(page, `127.0.0.1:${port}`, /retrying in \d+ s/, 'retrying');
  await P.waitText(page, '#notices', new RegExp(`Relay 127\\.0\\.0\\.1:${port} lost`), 'the loss notice');
  await H.screenshot(page, 'relay-retrying');
  relay = await H.startRelay('relay/relay.ident', port, { webRoot: server ? null : H.distDir });
  await P.waitRelay(page, `127.0.0.1:${port}`, /^Connected/, 'connected again', 60_000);
  await P.waitText(page, '#notices', /connected again/, 'the recovery notice');
});

test('a second relay takes over when the first is killed', async () => {
  port2 = await H.freePort();
  H.stmgr('gen-ident', '--output', 'relay/relay2.ident');
  H.stmgr('relay-ticket', '--address', `127.0.0.1:${port2}`, '--idfile', 'relay/relay2.ident',
    '--output', 'relay/relay2.relay');
  relay2 = await H.startRelay('relay/relay2.ident', port2, { webRoot: null });
  await P.screen(page, 'relays');
  await P.chooseFile(page, '#screen-relays .add .open-file', f('relay/relay2.relay'));
  await P.waitRelay(page, `127.0.0.1:${port2}`, /^Connected/, 'the second relay connects');
  await P.screen(page, 'me');
  await P.waitText(page, '#my-relays', new RegExp(`127\\.0\\.0\\.1:${port2}`), 'the ticket lists both');
  await P.shootElement(page, '#my-qr', f('app-qr2.png'));
  H.writeFileSync(f('app2.friend'), H.zbar(f('app-qr2.png')));
  assert.equal(JSON.parse(H.readFileSync(f('app2.friend'), 'utf8')).relays.length, 2);

  await relay.stop('SIGKILL');
  await P.screen(page, 'relays');
  await P.waitRelay(page, `127.0.0.1:${port}`, /retrying|Unreachable/, 'the first relay lost');
  await P.waitRelay(page, `127.0.0.1:${port2}`, /^Connected/, 'the second still up');
  const carol = H.start('stcat', ['connect', '--idfile', 'carol.ident', '--to', 'app2.friend', '-v']);
  await P.waitText(page, '#talk-log', /connected to you/, 'carol reaches the app through the second relay');
  carol.child.stdin.end('through relay two\n');
  await P.waitText(page, '#talk-log', /through relay two/, 'the line through relay two');
  await P.tap(page, '#talk-finish');
  assert.deepEqual(await carol.ended(), { code: 0, signal: null }, carol.stderr);
  assert.match(carol.stderr, new RegExp(`127\\.0\\.0\\.1:${port2}`), 'carol went through relay two');
});

test('the app shell is installable and opens offline from its service worker', async () => {
  const manifest = await page.$eval('link[rel="manifest"]', (e) => e.href);
  const json = await page.evaluate(async (url) => (await fetch(url)).json(), manifest);
  assert.equal(json.display, 'standalone');
  assert.ok(json.icons.some((i) => i.sizes === '512x512'));
  await page.evaluate(() => navigator.serviceWorker.ready);
  await page.setOfflineMode(true);
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]', { timeout: 20_000 });
  assert.equal(await P.textOf(page, '#my-key'), myKey, 'the same identity after reload');
  await page.setOfflineMode(false);
});
