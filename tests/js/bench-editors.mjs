// Editors for bench/docs (the shared-documents benchmark): real npm yjs documents through the
// resonance-yjs provider on centrifuge-js, or (mode "plain") the same schedule as plain channel
// publications, the baseline. Run with `node --preserve-symlinks bench-editors.mjs '<json>'`.
//
// Config: {urls: [ws url per editor], tokens: [...], ids: [editor numbers], channel, rate, seconds, mode}.
// Prints {"ready": n} once every editor is synced, waits for "go <wall ms>" on stdin, edits at
// `rate` per editor per second from then for `seconds`, then prints {"latencies": [...], "received",
// "sent", "docBytes"} (latency: wall ms from an edit to its arrival at another editor here).
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import readline from 'node:readline';
import { readdirSync, readFileSync } from 'node:fs';
import { ResonanceYjsProvider, Y } from 'resonance-yjs';

const cfg = JSON.parse(process.argv[2]);
const now = () => performance.timeOrigin + performance.now();
const latencies = [];
let received = 0;
let sent = 0;
const errors = {};
const rpcTimes = [];

const editors = await Promise.all(cfg.ids.map(async (id, k) => {
  const client = new Centrifuge(cfg.urls[k], { websocket: WebSocket, token: cfg.tokens[k] });
  client.connect();
  await client.ready(30000);
  if (cfg.mode === 'plain') {
    const sub = client.newSubscription(cfg.channel);
    sub.on('publication', (ctx) => {
      if (ctx.data.e !== id) { received += 1; latencies.push(now() - ctx.data.t); }
    });
    sub.subscribe();
    await sub.ready(30000);
    return { id, edit: (seq) => sub.publish({ e: id, q: seq, t: now(), x: 'k' }) };
  }
  const rpc = client.rpc.bind(client); // the round trip of each doc.send, for the report
  client.rpc = async (...a) => { const t0 = now(); try { return await rpc(...a); } finally { rpcTimes.push(now() - t0); } };
  const doc = new Y.Doc();
  const provider = new ResonanceYjsProvider(client, cfg.channel, doc);
  provider.on('error', (error) => { const key = `${error?.code ?? ''} ${error?.message ?? error}`; errors[key] = (errors[key] ?? 0) + 1; });
  const map = doc.getMap('m');
  const text = doc.getText('t');
  map.observe((event) => {
    if (event.transaction.origin !== provider) return;
    const t = now();
    for (const key of event.keysChanged) {
      const value = map.get(key);
      if (value && value[0] !== id) { received += 1; latencies.push(t - value[2]); }
    }
  });
  await new Promise((resolve) => provider.on('synced', (s) => s && resolve()));
  return {
    id, doc, provider,
    edit: (seq) => doc.transact(() => {
      text.insert(Math.floor(Math.random() * (text.length + 1)), 'k');
      map.set(`e${id}`, [id, seq, now()]);
    }),
  };
}));
process.stdout.write(JSON.stringify({ ready: editors.length }) + '\n');

const rl = readline.createInterface({ input: process.stdin });
const start = await new Promise((resolve) => rl.on('line', (line) => resolve(Number(line.split(' ')[1]))));
const pct = (xs) => { const o = [...xs].sort((a, b) => a - b); return o.length ? { p50: o[Math.floor(o.length / 2)], p99: o[Math.floor(o.length * 0.99)], n: o.length } : null; };
// Seconds this process's threads were runnable but waited for a CPU (Linux schedstat; 0 elsewhere).
const runDelay = () => {
  try {
    return readdirSync('/proc/self/task').reduce((sum, t) => {
      try { return sum + Number(readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ')[1]) / 1e9; } catch { return sum; }
    }, 0);
  } catch { return 0; }
};
const cpuAtStart = process.cpuUsage();
const delayAtStart = runDelay();
const period = 1000 / cfg.rate;
const end = start + cfg.seconds * 1000;
await Promise.all(editors.map(async (ed) => {
  let next = start + Math.random() * period; // spread the editors over the period
  for (let seq = 0; next < end; seq += 1, next += period) {
    const wait = next - now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    ed.edit(seq);
    sent += 1;
  }
}));
await new Promise((r) => setTimeout(r, 2000)); // the last deliveries
const docBytes = editors[0].doc ? Y.encodeStateAsUpdate(editors[0].doc).length : 0;
const used = process.cpuUsage(cpuAtStart);
const cpuSeconds = (used.user + used.system) / 1e6;
const waitedSeconds = runDelay() - delayAtStart;
const rounded = latencies.map((l) => Math.round(l * 100) / 100);
// A pipe is written asynchronously: exit once the whole line is out.
process.stdout.write(JSON.stringify({ latencies: rounded, received, sent, docBytes, cpuSeconds, waitedSeconds, errors, rpcMs: pct(rpcTimes) }) + '\n', () => process.exit(0));
