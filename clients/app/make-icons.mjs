// Renders icons/icon.svg to the PNG icons the web app manifest names (192 and 512 px), with
// the Debian chromium that the tests use. Run it after changing the SVG; the PNGs are committed.
import puppeteer from 'puppeteer-core';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const svg = await readFile(join(here, 'icons/icon.svg'), 'utf8');
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking'],
});
try {
  const page = await browser.newPage();
  for (const size of [192, 512]) {
    await page.setViewport({ width: size, height: size });
    await page.setContent(`<body style="margin:0;background:transparent">${svg.replace('<svg ', `<svg width="${size}" height="${size}" `)}</body>`);
    await page.screenshot({ path: join(here, `icons/icon-${size}.png`), omitBackground: true });
  }
} finally {
  await browser.close();
}
