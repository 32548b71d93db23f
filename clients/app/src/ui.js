// Small DOM helpers: building elements, the notice log, downloads. No framework: the app has
// four screens and a few lists, rebuilt whole when their data changes.

export const $ = (selector) => document.querySelector(selector);

// h('button', {class: 'x', onclick: f}, 'text', child, ...): an element with attributes,
// properties (on*, and anything not a string) and children (strings become text).
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (typeof value === 'string' || typeof value === 'number') element.setAttribute(name, value);
    else if (value === true) element.setAttribute(name, '');
    else element[name] = value;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return element;
}

const MAX_NOTICES = 3;  // the newest few stay on screen; all of them go to the screen reader

// Says something to the person: a line at the top of the page (role="log", polite), so a
// connection change is never silent. kind: 'info' | 'good' | 'bad'.
export function notice(text, kind = 'info') {
  const list = $('#notices');
  const time = new Date().toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  list.prepend(h('li', { class: `notice ${kind}` }, h('time', {}, time), ' ', text));
  while (list.children.length > MAX_NOTICES) list.lastElementChild.remove();
}

export function download(filename, blobOrText) {
  const blob = blobOrText instanceof Blob
    ? blobOrText : new Blob([blobOrText], { type: 'application/json' });
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// Picks a file with a hidden <input type="file"> and resolves with it (or null if cancelled).
export function pickFile(accept) {
  return new Promise((resolve) => {
    const input = h('input', { type: 'file', accept, hidden: true, class: 'file-picker' });
    input.addEventListener('change', () => { resolve(input.files[0] ?? null); input.remove(); });
    input.addEventListener('cancel', () => { resolve(null); input.remove(); });
    document.body.append(input);
    input.click();
  });
}
