// One conversation: one end-to-end stream with a friend, in either direction.
//
// On the wire a stream is bytes, as with stcat: text lines are UTF-8 ending in "\n" (what stcat
// reads from a terminal), and a file is its bytes followed by our end of data (what
// "stcat < file" sends; "stcat > file" on the other side writes them and stops at the end).
// What we receive is kept, so it can be saved as a file at any time; while it is text it is also
// shown line by line. Events (all plain Event with fields):
//   'line'     {text, from: 'me'|'them'}     a text line
//   'progress' {sent, total} / {received}    bytes moving
//   'state'    {}                            ended/closed flags changed (see the getters)
//   'note'     {text}                        something a person should be told

const MAX_KEPT_BYTES = 64 * 1024 * 1024;  // received bytes kept in memory for "Save"
const FILE_SLICE = 64 * 1024;             // a file is read and sent in slices of this size

function event(type, fields) {
  return Object.assign(new Event(type), fields);
}

export class Conversation extends EventTarget {
  #stream; #chunks = []; #decoder = new TextDecoder('utf-8', { fatal: true });
  #partial = ''; #binary = false; #writing = Promise.resolve();

  received = 0; sent = 0;
  theyEnded = false; weEnded = false; closed = false; outcome = null;

  constructor(stream, friend, direction) {
    super();
    this.#stream = stream;
    this.friend = friend;
    this.direction = direction;  // 'outgoing' or 'incoming'
    this.startedAt = new Date();
    stream.addEventListener('close', (e) => this.#onClose(e));
    this.#readLoop();
  }

  get binary() { return this.#binary; }
  get peer() { return this.#stream.peer; }
  get rtt() { return this.#stream.rtt; }

  async #readLoop() {
    try {
      for (;;) {
        const chunk = await this.#stream.read();
        if (chunk === null) break;
        this.#take(chunk);
        if (this.closed) return;
      }
      this.#flushPartial();
      this.theyEnded = true;
      this.dispatchEvent(event('note', { text: this.#binary
        ? 'They finished sending: the data is complete and can be saved.'
        : 'They finished sending (end of their text).' }));
      this.dispatchEvent(event('state', {}));
    } catch (error) {
      this.#finish(error);
    }
  }

  #take(chunk) {
    this.received += chunk.length;
    if (this.received > MAX_KEPT_BYTES) {
      this.dispatchEvent(event('note', { text:
        `Received more than ${MAX_KEPT_BYTES / 1048576} MiB, more than this app keeps: stopped.` }));
      this.close();
      return;
    }
    this.#chunks.push(chunk);
    if (!this.#binary) this.#showText(chunk);
    this.dispatchEvent(event('progress', { received: this.received }));
  }

  // Text is shown line by line until a byte says otherwise (a NUL, or invalid UTF-8): from
  // then on the conversation only counts bytes, and "Save" gives the whole of them.
  #showText(chunk) {
    let text;
    try {
      if (chunk.includes(0)) throw new Error('binary');
      text = this.#decoder.decode(chunk, { stream: true });
    } catch {
      this.#binary = true;
      this.dispatchEvent(event('note', { text: 'They are sending data that is not text (a file?).' }));
      return;
    }
    const lines = (this.#partial + text).split('\n');
    this.#partial = lines.pop();
    for (const line of lines) this.dispatchEvent(event('line', { text: line, from: 'them' }));
  }

  #flushPartial() {
    if (!this.#binary && this.#partial) {
      this.dispatchEvent(event('line', { text: this.#partial, from: 'them' }));
    }
    this.#partial = '';
  }

  // Writes are queued, so a line typed while a file goes out waits its turn.
  #queue(job) {
    const run = this.#writing.then(job);
    this.#writing = run.catch(() => {});
    return run;
  }

  sendText(line) {
    const bytes = new TextEncoder().encode(`${line}\n`);
    return this.#queue(async () => {
      await this.#stream.write(bytes);
      this.sent += bytes.length;
      this.dispatchEvent(event('line', { text: line, from: 'me' }));
    });
  }

  // Sends the file's bytes, then our end of data (as "stcat < file" does).
  sendFile(file) {
    return this.#queue(async () => {
      for (let offset = 0; offset < file.size; offset += FILE_SLICE) {
        const slice = new Uint8Array(await file.slice(offset, offset + FILE_SLICE).arrayBuffer());
        await this.#stream.write(slice);
        this.sent += slice.length;
        this.dispatchEvent(event('progress', { sent: offset + slice.length, total: file.size }));
      }
      await this.#endSending();
    });
  }

  finishSending() {
    return this.#queue(() => this.#endSending());
  }

  async #endSending() {
    if (this.weEnded) return;
    await this.#stream.end();
    this.weEnded = true;
    this.dispatchEvent(event('state', {}));
  }

  receivedBlob() {
    return new Blob(this.#chunks, { type: 'application/octet-stream' });
  }

  close() {
    if (this.closed) return;
    this.#stream.close();
  }

  #onClose(e) {
    this.#finish(e.detail?.error ?? e.error ?? null);
  }

  #finish(error) {
    if (this.closed) return;
    this.closed = true;
    this.outcome = error ?? null;
    this.dispatchEvent(event('state', {}));
  }
}
