// The app: starts the node with what the store holds, wires the four screens and the import
// flows (scan, file, paste). Who owns what: `app` holds the data and the node; each screen's
// render function rebuilds its lists from `app`; conversations (conversation.js) own their
// streams and report through events that talk.js shows.

import {
  ready, Identity, Node, formatFriendTicket, keyText, shortKey, readTicket, NotATicket,
  defaultRelayUrl, checkRelayUrl,
} from './core.js';
import { Store } from './store.js';
import { Scanner, cameraProblem } from './scan.js';
import { qrSvg } from './qr.js';
import { relayStateWords, errorWords } from './words.js';
import { $, h, notice, download, pickFile } from './ui.js';
import { Talk } from './talk.js';

const app = {
  store: null,
  identity: null,
  relays: [],    // [{text, ticket, url?}] in the order the user added them
  friends: [],   // [{text, ticket, key, name}]
  status: new Map(),  // relay id -> {state, retryAt, error}
  refused: [],   // [{key, at}] the last strangers refused
  node: null,
  talk: null,
};

const relayId = (ticket) => `${keyText(ticket.publicKey)}@${ticket.address}`;
const friendByKey = (key) => app.friends.find((f) => f.key === keyText(key));
const friendName = (key) => friendByKey(key)?.name ?? `stranger ${shortKey(key)}`;
const relayUrl = (relay) => relay.url ?? defaultRelayUrl(relay.ticket.address);

// ------------------------------------------------------------------------------- the node

function startNode() {
  const node = new Node({
    identity: app.identity,
    relays: app.relays.map((r) => r.ticket),
    friends: (key) => Boolean(friendByKey(key)),
    url: (ticket) => {
      const relay = app.relays.find((r) => relayId(r.ticket) === relayId(ticket));
      return relay ? relayUrl(relay) : defaultRelayUrl(ticket.address);
    },
  });
  node.addEventListener('relay', (e) => onRelayEvent(e.detail));
  node.addEventListener('incoming', (e) => app.talk.open(e.detail.stream, 'incoming'));
  node.addEventListener('refused', (e) => onRefused(e.detail));
  node.addEventListener('accept_failed', (e) => notice(
    `${friendName(e.detail.peer)} tried to connect, but it failed: ${errorWords(e.detail.error)}.`, 'bad'));
  node.listen();
  app.node = node;
}

function onRelayEvent({ relay, state, retryInMs, error, rtt }) {
  const id = relayId(relay);
  const previous = app.status.get(id);
  const before = previous?.state;
  const lastFailure = state === 'connected' ? null
    : retryInMs !== undefined ? state : previous?.lastFailure ?? null;
  app.status.set(id, { state, retryAt: retryInMs !== undefined ? Date.now() + retryInMs : null, error, lastFailure,
    rtt: state === 'connected' ? rtt ?? previous?.rtt : null,
    wasConnected: state === 'connected' || Boolean(previous?.wasConnected) });
  const where = relay.address;
  if (state === 'connected' && before !== 'connected') {
    notice(`Relay ${where}: connected${previous?.wasConnected ? ' again' : ''}.`, 'good');
  } else if (state !== 'connected' && before === 'connected') {
    notice(`Relay ${where} lost${retryInMs !== undefined ? `; retrying in ${Math.ceil(retryInMs / 1000)} s` : ''}.`, 'bad');
  } else if (['identity_mismatch', 'refused'].includes(state) && previous?.lastFailure !== state) {
    notice(`Relay ${where}: ${relayStateWords(state)}`, 'bad');
  }
  if (before === state) updateRelayStates();
  else renderRelays();
  renderSummary();
}

function onRefused({ peer, reason }) {
  const key = keyText(peer);
  app.refused.unshift({ key, at: new Date(), reason });
  app.refused.length = Math.min(app.refused.length, 5);
  notice(`Refused a connection from a stranger (key ${shortKey(key)}...): not in your friends.`, 'bad');
  renderFriends();
}

async function restartNode() {
  const old = app.node;
  app.node = null;
  app.status.clear();
  if (old) await old.close();
  startNode();
  renderAll();
}

// ------------------------------------------------------------------------------- storage

async function saveRelays() {
  await app.store.set('relays', app.relays.map(({ text, url }) => ({ text, url })));
  app.node?.setRelays(app.relays.map((r) => r.ticket));
}

async function saveFriends() {
  await app.store.set('friends', app.friends.map(({ text, name }) => ({ text, name })));
}

async function loadAll() {
  app.store = await Store.open();
  const identityText = await app.store.get('identity');
  if (identityText) {
    app.identity = Identity.parseFile(identityText);
  } else {
    // First use: the identity is made here and never leaves the phone unless exported.
    app.identity = Identity.generate();
    await app.store.set('identity', app.identity.toFile());
  }
  for (const { text, url } of (await app.store.get('relays')) ?? []) {
    app.relays.push({ text, ticket: readTicket(text).ticket, url });
  }
  for (const { text, name } of (await app.store.get('friends')) ?? []) {
    const { ticket } = readTicket(text);
    app.friends.push({ text, ticket, key: keyText(ticket.publicKey), name });
  }
}

// ------------------------------------------------------------------------------- import

// Adds what a scanned, picked or pasted text holds; returns a sentence saying what was done.
async function importTicket(text) {
  const { kind, ticket, text: clean } = readTicket(text);
  if (kind === 'relay') {
    if (app.relays.some((r) => relayId(r.ticket) === relayId(ticket))) {
      return `Relay ${ticket.address} is already in your list.`;
    }
    app.relays.push({ text: clean, ticket });
    await saveRelays();
    renderAll();
    return `Added relay ${ticket.address}.`;
  }
  const key = keyText(ticket.publicKey);
  if (key === keyText(app.identity.publicKey)) throw new NotATicket('This is your own friend ticket.');
  const known = friendByKey(key);
  if (known) {
    known.text = clean;
    known.ticket = ticket;
    await saveFriends();
    renderAll();
    return `${known.name}'s ticket was updated.`;
  }
  const name = `Friend ${shortKey(key)}`;
  app.friends.push({ text: clean, ticket, key, name });
  await saveFriends();
  renderAll();
  return `Added ${name} (rename them on the Friends screen).`;
}

let scanner = null;

async function scanFlow() {
  const dialog = $('#scan-dialog');
  const status = $('#scan-status');
  scanner = new Scanner($('#scan-video'), $('#scan-canvas'));
  status.textContent = 'Starting the camera...';
  dialog.showModal();
  try {
    await scanner.start(async (text) => {
      try {
        const said = await importTicket(text);
        stopScan();
        notice(said, 'good');
      } catch (error) {
        // Wrong code: say so and keep scanning, so the right one can follow.
        status.textContent = `${error.message} Try another code.`;
        status.className = 'status bad';
      }
    });
    status.textContent = 'Looking for a QR code...';
    status.className = 'status';
  } catch (error) {
    status.textContent = error.message;
    status.className = 'status bad';
  }
}

function stopScan() {
  scanner?.stop();
  scanner = null;
  $('#scan-dialog').close();
}

async function fileFlow() {
  const file = await pickFile('.relay,.friend,.json,application/json,text/plain');
  if (!file) return;
  try {
    notice(await importTicket(await file.text()), 'good');
  } catch (error) {
    notice(`${file.name}: ${error.message}`, 'bad');
  }
}

function pasteFlow() {
  const dialog = $('#paste-dialog');
  $('#paste-text').value = '';
  $('#paste-status').textContent = '';
  dialog.showModal();
}

async function onPasteClose(event) {
  if (event.submitter?.value !== 'ok') return;
  event.preventDefault();
  try {
    const said = await importTicket($('#paste-text').value);
    $('#paste-dialog').close();
    notice(said, 'good');
  } catch (error) {
    $('#paste-status').textContent = error.message;
    $('#paste-status').className = 'status bad';
  }
}

// A one-line question in a dialog; resolves with the answer, or null when cancelled.
function ask(title, label, value) {
  const dialog = $('#ask-dialog');
  $('#ask-title').textContent = title;
  $('#ask-label').textContent = label;
  $('#ask-input').value = value ?? '';
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close',
    () => resolve(dialog.returnValue === 'ok' ? $('#ask-input').value : null), { once: true }));
}

// ------------------------------------------------------------------------------- screens

function relayStatusText(relay) {
  const status = app.status.get(relayId(relay.ticket));
  if (!status) return { text: 'Not started', cls: '' };
  const retryInS = status.retryAt ? Math.max(0, Math.ceil((status.retryAt - Date.now()) / 1000)) : null;
  const cls = status.state === 'connected' ? 'good'
    : ['connecting', 'retrying'].includes(status.state) ? 'wait' : 'bad';
  // While a new attempt runs, the card keeps saying what went wrong last time.
  if (status.state === 'connecting' && status.lastFailure) {
    return { text: `Trying again... (${relayStateWords(status.lastFailure)})`, cls: 'wait' };
  }
  const rtt = status.rtt ? ` (round trip ${Math.round(status.rtt)} ms)` : '';
  return { text: relayStateWords(status.state, retryInS) + rtt, cls };
}

function renderRelays() {
  const list = $('#relay-list');
  list.replaceChildren(...app.relays.map((relay, index) => {
    const { text, cls } = relayStatusText(relay);
    return h('li', { class: 'card relay', 'data-address': relay.ticket.address },
      h('h3', {}, relay.ticket.address),
      h('p', { class: `state ${cls}` }, text),
      h('p', { class: 'detail' }, `Key ${shortKey(relay.ticket.publicKey)}... via `, h('code', {}, relayUrl(relay))),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'set-url', onclick: () => editRelayUrl(relay) }, 'Set URL'),
        h('button', { type: 'button', class: 'remove', onclick: () => removeRelay(index) }, 'Remove')));
  }));
  if (!app.relays.length) list.append(h('li', { class: 'empty' }, 'No relay yet: add one below.'));
}

// The once-a-second countdown touches only the state lines, so a button being pressed (or
// focused by a screen reader) is never replaced under the finger.
function updateRelayStates() {
  const cards = document.querySelectorAll('#relay-list li.card');
  app.relays.forEach((relay, index) => {
    const line = cards[index]?.querySelector('.state');
    if (!line) return;
    const { text, cls } = relayStatusText(relay);
    if (line.textContent !== text) line.textContent = text;
    line.className = `state ${cls}`;
  });
}

async function editRelayUrl(relay) {
  const answer = await ask(`URL of ${relay.ticket.address}`,
    'WebSocket URL (empty for the default; e.g. wss://relay.example.org/strelay behind a TLS proxy)',
    relay.url ?? '');
  if (answer === null) return;
  try {
    relay.url = answer.trim() ? checkRelayUrl(answer) : undefined;
  } catch (error) {
    notice(error.message, 'bad');
    return;
  }
  await saveRelays();
  await restartNode();
}

async function removeRelay(index) {
  const [relay] = app.relays.splice(index, 1);
  app.status.delete(relayId(relay.ticket));
  await saveRelays();
  notice(`Removed relay ${relay.ticket.address}.`);
  renderAll();
}

function renderFriends() {
  const list = $('#friend-list');
  list.replaceChildren(...app.friends.map((friend, index) => h('li', { class: 'card friend' },
    h('h3', {}, friend.name),
    h('p', { class: 'detail' }, `Key ${shortKey(friend.key)}... on `,
      friend.ticket.relays.map((r) => r.address).join(', ') || 'no relay'),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'primary', onclick: () => app.talk.call(friend) }, 'Talk'),
      h('button', { type: 'button', onclick: () => renameFriend(friend) }, 'Rename'),
      h('button', { type: 'button', onclick: () => removeFriend(index) }, 'Remove')))));
  if (!app.friends.length) list.append(h('li', { class: 'empty' }, 'No friend yet: add one below.'));
  $('#refused-box').hidden = !app.refused.length;
  $('#refused-list').replaceChildren(...app.refused.map(({ key, at }) =>
    h('li', {}, `${at.toLocaleTimeString()}: key ${shortKey(key)}... (not a friend)`)));
}

async function renameFriend(friend) {
  const name = await ask('Rename', `Name for ${shortKey(friend.key)}...`, friend.name);
  if (!name?.trim()) return;
  friend.name = name.trim();
  await saveFriends();
  renderAll();
}

async function removeFriend(index) {
  const [friend] = app.friends.splice(index, 1);
  await saveFriends();
  notice(`Removed ${friend.name}: they can no longer reach you.`);
  renderAll();
}

function myFriendTicket() {
  return formatFriendTicket({
    publicKey: app.identity.publicKey,
    relays: app.relays.map((r) => r.ticket),
  });
}

let shownTicket = '';

async function renderMe() {
  $('#my-key').textContent = keyText(app.identity.publicKey);
  const ticket = myFriendTicket();
  $('#my-relays').textContent = app.relays.length
    ? `It lists your relays: ${app.relays.map((r) => r.ticket.address).join(', ')}.`
    : 'It lists no relay yet: add a relay first, or friends cannot find you.';
  if (ticket !== shownTicket) {
    shownTicket = ticket;
    // The code holds the same JSON without the file's indentation: fewer modules, easier to scan.
    $('#my-qr').innerHTML = await qrSvg(JSON.stringify(JSON.parse(ticket)));
  }
}

function renderSummary() {
  const up = app.relays.filter((r) => app.status.get(relayId(r.ticket))?.state === 'connected').length;
  const talking = app.talk?.openCount() ?? 0;
  $('#summary').textContent = !app.relays.length ? 'No relay yet'
    : `${up} of ${app.relays.length} relay${app.relays.length > 1 ? 's' : ''} connected` +
      (talking ? ` · ${talking} conversation${talking > 1 ? 's' : ''}` : '');
  $('#summary').className = `summary ${up ? 'good' : 'bad'}`;
}

function renderAll() {
  renderMe();
  renderRelays();
  renderFriends();
  renderSummary();
  app.talk?.render();
}

export function show(screen) {
  for (const section of document.querySelectorAll('.screen')) {
    section.hidden = section.id !== `screen-${screen}`;
  }
  for (const tab of document.querySelectorAll('.tabs button')) {
    if (tab.dataset.screen === screen) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  $(`#screen-${screen} h2`).focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

// ------------------------------------------------------------------------------- identity

async function importIdentity() {
  const file = await pickFile('.ident,.json,application/json,text/plain');
  if (!file) return;
  let identity;
  try {
    identity = Identity.parseFile(await file.text());
  } catch (error) {
    notice(`${file.name}: not an identity file (${error.message})`, 'bad');
    return;
  }
  if (!confirm('Replace this app\'s identity? Friends who know the old key will no longer reach you.')) return;
  app.identity = identity;
  await app.store.set('identity', identity.toFile());
  notice(`Identity imported: you are now ${shortKey(identity.publicKey)}...`, 'good');
  await restartNode();
}

// ------------------------------------------------------------------------------- start

function wire() {
  for (const tab of document.querySelectorAll('.tabs button')) {
    tab.addEventListener('click', () => show(tab.dataset.screen));
  }
  for (const button of document.querySelectorAll('.add .scan')) button.addEventListener('click', scanFlow);
  for (const button of document.querySelectorAll('.add .open-file')) button.addEventListener('click', fileFlow);
  for (const button of document.querySelectorAll('.add .paste')) button.addEventListener('click', pasteFlow);
  $('#scan-cancel').addEventListener('click', stopScan);
  $('#scan-dialog').addEventListener('cancel', stopScan);
  $('#paste-form').addEventListener('submit', onPasteClose);
  $('#save-friend').addEventListener('click', () =>
    download(`${shortKey(app.identity.publicKey)}.friend`, myFriendTicket()));
  $('#copy-friend').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(myFriendTicket());
      notice('Your friend ticket was copied.', 'good');
    } catch {
      notice('Copying is not allowed here; use "Save as .friend file".', 'bad');
    }
  });
  $('#export-ident').addEventListener('click', () =>
    download(`${shortKey(app.identity.publicKey)}.ident`, app.identity.toFile()));
  $('#import-ident').addEventListener('click', importIdentity);
  const problem = cameraProblem();
  for (const p of document.querySelectorAll('.secure-only')) {
    p.hidden = !problem;
    p.textContent = problem ?? '';
  }
  // Retry countdowns tick down once a second.
  setInterval(() => { if (!$('#screen-relays').hidden) updateRelayStates(); }, 1000);
}

async function main() {
  wire();
  try {
    await ready();
    await loadAll();
  } catch (error) {
    $('#summary').textContent = `The app could not start: ${error.message}`;
    return;
  }
  app.talk = new Talk({ getNode: () => app.node, friendByKey, friendName, show, onChange: renderSummary });
  startNode();
  renderAll();
  show(app.relays.length ? 'friends' : 'relays');
  if ('serviceWorker' in navigator && globalThis.isSecureContext) {
    navigator.serviceWorker.register('sw.js').catch(() => {});
  }
  document.body.dataset.ready = 'true';
}

main();
