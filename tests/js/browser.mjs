// centrifuge-js's protobuf build in a page of headless Chromium, driven over stdin/stdout by the Python tests
// (tests/harness/jsclient.py BrowserClient) with the same ops as client.mjs.
//
//   node browser.mjs /usr/bin/chromium
//
// page.mjs (the SDK imported as `centrifuge/build/protobuf`, plus ops.mjs) is bundled with esbuild and served
// from a loopback HTTP server of its own, so the page has a real http://127.0.0.1:<port> origin and its
// WebSocket handshakes carry that Origin header, as a browser app's do. The first stdout line is
// {"event": "page", "origin": ...}; then replies and SDK events as JSON lines.
import http from 'node:http';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';
import { errorOf } from './ops.mjs';

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const executablePath = process.argv[2] ?? '/usr/bin/chromium';

const bundle = await esbuild.build({
  entryPoints: [fileURLToPath(new URL('./page.mjs', import.meta.url))],
  bundle: true, write: false, format: 'iife', platform: 'browser', target: 'es2020', logLevel: 'error',
});
const script = bundle.outputFiles[0].contents;
const html = '<!doctype html><meta charset="utf-8"><title>resonance protobuf</title><script src="/page.js"></script>';
const server = http.createServer((req, res) => {
  if (req.url === '/page.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
  } else if (req.url === '/') {
    res.writeHead(200, { 'content-type': 'text/html' }).end(html);
  } else {
    res.writeHead(404).end();
  }
});
const pagePort = Number(process.argv[3] ?? 0); // 0: any free port (a worker must allow the origin)
await new Promise((resolve) => server.listen(pagePort, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] });
const page = await browser.newPage();
page.on('console', (msg) => process.stderr.write(`page ${msg.type()}: ${msg.text()}\n`));
page.on('pageerror', (err) => process.stderr.write(`page error: ${err}\n`));
await page.exposeFunction('resonanceEmit', (obj) => out(obj));
await page.goto(origin + '/');
await page.waitForFunction(() => typeof window.resonanceHandle === 'function');
out({ event: 'page', origin, userAgent: await page.evaluate(() => navigator.userAgent) });

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  await browser.close().catch(() => {});
  server.close();
  process.exit(0);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  if (!line.trim()) return;
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { out({ ok: false, error: errorOf(e) }); return; }
  if (cmd.op === 'close') {
    await page.evaluate((c) => window.resonanceHandle(c), cmd).catch(() => {});
    setTimeout(shutdown, 20);
    return;
  }
  page.evaluate((c) => window.resonanceHandle(c), cmd).catch((e) => out({ id: cmd.id, ok: false, error: errorOf(e) }));
});
rl.on('close', shutdown);
