// Driving the app like a person: tap the tabs and buttons, read what the screen says.
import { until } from './harness.mjs';

// Scrolls the control to the middle of the screen first, as a person does: the tab bar at
// the bottom would otherwise take a tap meant for a button beneath it. The app redraws a list
// when a relay's state changes, so the control found can be replaced before the tap lands
// ("Node is detached from document"); a person would tap the new one, and so does this.
export async function tap(page, selector) {
  await until(async () => {
    try {
      await page.waitForSelector(selector, { visible: true });
      await page.$eval(selector, (e) => e.scrollIntoView({ block: 'center' }));
      await page.tap(selector);
      return true;
    } catch (error) {
      if (/detached/i.test(String(error?.message))) return false;
      throw error;
    }
  }, `a tap on ${selector}`);
}

export async function screen(page, name) {
  await tap(page, `.tabs button[data-screen="${name}"]`);
  await page.waitForSelector(`#screen-${name}:not([hidden])`);
}

export function textOf(page, selector) {
  return page.$eval(selector, (e) => e.innerText).catch(() => '');
}

export async function waitText(page, selector, pattern, what, timeoutMs = 20_000) {
  let last = '';
  await until(async () => pattern.test(last = await textOf(page, selector)), 
    `${what} (${selector} says: ${JSON.stringify(last.slice(-400))})`, timeoutMs);
  return last;
}

// The state line of the relay card for this address.
export function relayState(page, address) {
  return textOf(page, `#relay-list li[data-address="${address}"] .state`);
}

export async function waitRelay(page, address, pattern, what, timeoutMs = 30_000) {
  return waitText(page, `#relay-list li[data-address="${address}"] .state`, pattern,
    `relay ${address}: ${what}`, timeoutMs);
}

// Picks a file through the app's file chooser opened by tapping `selector`.
export async function chooseFile(page, selector, path) {
  const [chooser] = await Promise.all([page.waitForFileChooser(), tap(page, selector)]);
  await chooser.accept([path]);
}

export async function paste(page, screenName, text) {
  await screen(page, screenName);
  await tap(page, `#screen-${screenName} .add .paste`);
  await page.waitForSelector('#paste-dialog[open]');
  await page.$eval('#paste-text', (e, t) => { e.value = t; }, text);
  await tap(page, '#paste-ok');
}

export async function scan(page, screenName) {
  await screen(page, screenName);
  await tap(page, `#screen-${screenName} .add .scan`);
  await page.waitForSelector('#scan-dialog[open]');
}

export async function friendCard(page, namePattern) {
  const cards = await page.$$('#friend-list li.card');
  for (const card of cards) {
    if (namePattern.test(await card.$eval('h3', (e) => e.innerText))) return card;
  }
  return null;
}

export async function talkTo(page, namePattern) {
  await screen(page, 'friends');
  const card = await friendCard(page, namePattern);
  if (!card) throw new Error(`no friend card matches ${namePattern}`);
  const button = await card.$('button.primary');
  await button.evaluate((e) => e.scrollIntoView({ block: 'center' }));
  await button.tap();
  await page.waitForSelector('#screen-talk:not([hidden])');
}

export async function say(page, line) {
  await page.$eval('#talk-input', (e) => e.focus());
  await page.keyboard.type(line);
  await tap(page, '#talk-send');
}

// A picture of one element as a person sees it: scrolled to the middle of the screen, clear of
// the sticky header and the tab bar.
export async function shootElement(page, selector, path) {
  await page.$eval(selector, (e) => e.scrollIntoView({ block: 'center' }));
  await (await page.$(selector)).screenshot({ path, scrollIntoView: false });
}
