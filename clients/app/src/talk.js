// The Talk screen and the list of conversations. A conversation opens when we call a friend
// or a friend calls us; every change (connected, their end, closed and why) is written into
// its log and, when it matters, into the notices, so nothing happens silently.

import { Conversation } from './conversation.js';
import { keyText, shortKey } from './core.js';
import { errorWords, byteWords } from './words.js';
import { $, h, notice, download, pickFile } from './ui.js';

export class Talk {
  #conversations = [];  // [{conversation, log: [{from, text, time}]}]
  #current = null;
  #deps;

  constructor(deps) {
    this.#deps = deps;  // {getNode, friendByKey, friendName, show, onChange}
    $('#talk-form').addEventListener('submit', (e) => { e.preventDefault(); this.#sendLine(); });
    $('#talk-file').addEventListener('click', () => this.#sendFile());
    $('#talk-save').addEventListener('click', () => this.#save());
    $('#talk-finish').addEventListener('click', () => this.#current?.conversation.finishSending());
    $('#talk-close').addEventListener('click', () => this.#current?.conversation.close());
    $('#talk-pick').addEventListener('change', (e) => {
      this.#current = this.#conversations[Number(e.target.value)] ?? null;
      this.render();
    });
    this.render();
  }

  openCount() {
    return this.#conversations.filter((c) => !c.conversation.closed).length;
  }

  async call(friend) {
    const node = this.#deps.getNode();
    notice(`Calling ${friend.name}...`);
    try {
      const stream = await node.connect(friend.ticket);
      // connect() tries the ticket's relays in order: those before the one used did not work.
      const used = friend.ticket.relays.findIndex((r) => r.address === stream.relay?.address);
      this.open(stream, 'outgoing', friend.ticket.relays.slice(0, Math.max(0, used)));
    } catch (error) {
      const tried = (error.failures ?? []).map((f) => `${f.relay.address}: ${errorWords(f.error)}`);
      notice(`Could not reach ${friend.name}: ${errorWords(error)}.${tried.length > 1 ? ` (${tried.join('; ')})` : ''}`, 'bad');
    }
  }

  // skipped: the relays of the friend's ticket tried before the one that worked (failover).
  open(stream, direction, skipped = []) {
    const key = keyText(stream.peer);
    const name = this.#deps.friendName(key);
    const conversation = new Conversation(stream, { key, name }, direction);
    const entry = { conversation, log: [] };
    this.#conversations.push(entry);
    const via = stream.relay ? ` via ${stream.relay.address}` : '';
    const said = direction === 'incoming' ? `${name} connected to you${via}.` : `Connected to ${name}${via}.`;
    this.#log(entry, 'note', `${said} End-to-end encrypted.`);
    for (const relay of skipped) {
      this.#log(entry, 'note', `Relay ${relay.address} did not work; the next one did.`);
    }
    notice(said, 'good');
    conversation.addEventListener('line', (e) => this.#log(entry, e.from, e.text));
    conversation.addEventListener('note', (e) => this.#log(entry, 'note', e.text));
    conversation.addEventListener('progress', () => { if (entry === this.#current) this.#renderStatus(); });
    stream.addEventListener('rtt', () => { if (entry === this.#current) this.#renderStatus(); });
    conversation.addEventListener('state', () => this.#onState(entry));
    // A new conversation comes to the front unless another one is going on.
    if (!this.#current || this.#current.conversation.closed) {
      this.#current = entry;
      this.#deps.show('talk');
    }
    this.render();
    this.#deps.onChange();
  }

  #onState(entry) {
    const c = entry.conversation;
    if (c.closed && !entry.closedNoted) {
      entry.closedNoted = true;
      const how = c.outcome ? `ended: ${errorWords(c.outcome)}` : 'ended normally';
      this.#log(entry, 'note', `Conversation ${how}.`);
      notice(`Conversation with ${c.friend.name} ${how}.`, c.outcome ? 'bad' : 'info');
      this.#deps.onChange();
    } else if (c.weEnded && !entry.endNoted) {
      entry.endNoted = true;
      this.#log(entry, 'note', 'You finished sending.');
    }
    this.render();
  }

  #log(entry, from, text) {
    const item = { from, text, time: new Date() };
    entry.log.push(item);
    if (entry === this.#current) {
      $('#talk-log').append(this.#logItem(item));
      $('#talk-log').lastElementChild.scrollIntoView({ block: 'nearest' });
    }
  }

  #logItem({ from, text }) {
    const who = from === 'me' ? 'You' : from === 'them' ? this.#current.conversation.friend.name : null;
    return h('li', { class: `line ${from}` }, who ? h('span', { class: 'who' }, `${who}: `) : null, text);
  }

  async #sendLine() {
    const input = $('#talk-input');
    const c = this.#current?.conversation;
    if (!c || !input.value) return;
    const text = input.value;
    input.value = '';
    try {
      await c.sendText(text);
    } catch (error) {
      this.#log(this.#current, 'note', `Not sent: ${errorWords(error)}.`);
    }
  }

  async #sendFile() {
    const entry = this.#current;
    if (!entry) return;
    const file = await pickFile('');
    if (!file) return;
    this.#log(entry, 'note', `Sending ${file.name} (${byteWords(file.size)}); your end of data follows it.`);
    entry.sending = { name: file.name, total: file.size };
    try {
      await entry.conversation.sendFile(file);
      this.#log(entry, 'note', `Sent ${file.name}: ${byteWords(file.size)}.`);
    } catch (error) {
      this.#log(entry, 'note', `Sending ${file.name} failed: ${errorWords(error)}.`);
    }
    entry.sending = null;
    this.render();
  }

  #save() {
    const c = this.#current?.conversation;
    if (!c?.received) return;
    const stamp = c.startedAt.toISOString().replace(/[:.]/g, '-');
    download(`from-${shortKey(c.friend.key)}-${stamp}.bin`, c.receivedBlob());
  }

  #renderStatus() {
    const c = this.#current?.conversation;
    const status = $('#talk-status');
    const progress = $('#talk-progress');
    if (!c) {
      status.textContent = 'No conversation yet. On the Friends screen, press "Talk" next to a friend.';
      progress.hidden = true;
      return;
    }
    const parts = [c.closed ? 'Closed' : 'Connected'];
    if (!c.closed && c.rtt) parts.push(`round trip ${Math.round(c.rtt)} ms`);
    if (c.theyEnded) parts.push('they finished sending');
    if (c.weEnded) parts.push('you finished sending');
    status.textContent = parts.join(' · ');
    status.className = `status ${c.closed ? (c.outcome ? 'bad' : '') : 'good'}`;
    const sending = this.#current.sending;
    progress.hidden = !sending && !c.received;
    const bar = $('#talk-progress-bar');
    if (sending) {
      bar.max = sending.total || 1;
      bar.value = Math.min(c.sent, sending.total);
      $('#talk-progress-text').textContent = `Sending ${sending.name}: ${byteWords(bar.value)} of ${byteWords(sending.total)}`;
    } else if (c.received) {
      bar.removeAttribute('value');
      if (c.theyEnded || c.closed) { bar.max = 1; bar.value = 1; }
      $('#talk-progress-text').textContent = `Received ${byteWords(c.received)}${c.theyEnded ? ' (complete)' : ''}`;
    }
  }

  render() {
    const entry = this.#current;
    const c = entry?.conversation;
    $('#talk-title').textContent = c ? `Talk with ${c.friend.name}` : 'Talk';
    const pick = $('#talk-pick');
    pick.hidden = $('#talk-pick-label').hidden = this.#conversations.length < 2;
    pick.replaceChildren(...this.#conversations.map((e, i) => h('option',
      { value: String(i), selected: e === entry },
      `${e.conversation.friend.name}, ${e.conversation.startedAt.toLocaleTimeString()}${e.conversation.closed ? ' (closed)' : ''}`)));
    $('#talk-log').replaceChildren(...(entry?.log ?? []).map((item) => this.#logItem(item)));
    const open = c && !c.closed;
    $('#talk-input').disabled = $('#talk-send').disabled = !open || c.weEnded;
    $('#talk-file').disabled = $('#talk-finish').disabled = !open || c.weEnded;
    $('#talk-close').disabled = !open;
    $('#talk-save').disabled = !c?.received;
    this.#renderStatus();
  }
}
