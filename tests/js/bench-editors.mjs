// Editors for bench/docs (the shared-documents benchmark): real npm yjs documents through the
// resonance-yjs provider on centrifuge-js, or (mode "plain") the same schedule as plain channel
// publications, the baseline. Run with `node --preserve-symlinks bench-editors.mjs '<json>'`.
//
// Config: {urls: [ws url per editor], tokens: [...], ids: [editor numbers], channel, rate, seconds, mode,
// observers: [editor numbers that apply what they receive; absent: all], provider: [module path],
// window, fastMs: [the provider's doc.send calls in flight, the round trip under which; absent: its defaults]}.
// Prints {"ready": n} once every editor is synced, waits for "go <wall ms>" on stdin, edits at
// `rate` per editor per second from then for `seconds`, then prints {"latencies": [...], "received",
// "sent", "docBytes"} (latency: wall ms from an edit to its arrival at another editor here).
//
// Where the time goes (documents): `atReceipt` is the delay from the edit to the publication's event
// on the receiving editor's socket (before Y.applyUpdate; it includes this process's event-loop wait;
// the earliest receipt of the batch it was applied in), `applyMs` the time the provider took to apply
// one batch (the publications of one turn of the event loop, `batch`), `queuedMs` how long an edit waited in
// the provider (past its window of doc.send calls in flight) before its doc.send, `rpcMs` each doc.send's round
// trip, `loopDelayMs` this process's event-loop delay (perf_hooks), `gcMs` V8's collections (each
// stops the process's JavaScript), `heapMiB` the heap at the end. An editor not in `observers`
// edits and receives every publication but applies none (its document diverges; the server's work is
// the same): the client's cost falls on the observers only.
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import readline from 'node:readline';
import { readdirSync, readFileSync } from 'node:fs';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { Y } from 'resonance-yjs';

const cfg = JSON.parse(process.argv[2]);
// `provider`: another build of the provider (a file here, e.g. main's), measured beside this one.
const { ResonanceYjsProvider } = await import(cfg.provider ?? 'resonance-yjs');
const now = () => performance.timeOrigin + performance.now();
const latencies = [];
let received = 0;
let sent = 0;
const errors = {};
const rpcTimes = [];
const atReceipt = [];
const applyTimes = [];
const batches = [];
const queued = [];
const observers = cfg.observers ? new Set(cfg.observers) : null;

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
  const edits = []; // local edits not yet in a doc.send
  const rpc = client.rpc.bind(client); // the round trip of each doc.send, for the report
  client.rpc = async (...a) => {
    const t0 = now();
    for (const t of edits.splice(0)) queued.push(t0 - t);
    try { return await rpc(...a); } finally { rpcTimes.push(now() - t0); }
  };
  const doc = new Y.Doc();
  // The socket's receipt: a listener before the provider's (centrifuge-js calls them in order). The
  // provider applies what arrived in one turn of the event loop in one transaction: `receivedAt` is the
  // earliest receipt of the batch, `applyTimes` each batch's transaction (and its size).
  const sub = client.newSubscription(cfg.channel);
  let receivedAt = null;
  let batch = 0;
  let applyingSince = null;
  sub.on('publication', () => { if (receivedAt === null) receivedAt = now(); batch += 1; });
  const provider = new ResonanceYjsProvider(client, cfg.channel, doc, { ...(cfg.window ? { window: cfg.window } : {}), ...(cfg.fastMs ? { fastMs: cfg.fastMs } : {}) });
  doc.on('beforeTransaction', (tr) => { if (tr.origin === provider) applyingSince = now(); });
  doc.on('afterTransaction', (tr) => {
    if (tr.origin !== provider || applyingSince === null) return;
    if (receivedAt !== null) { applyTimes.push(now() - applyingSince); batches.push(batch); }
    receivedAt = null; batch = 0; applyingSince = null;
  });
  provider.on('error', (error) => { const key = `${error?.code ?? ''} ${error?.message ?? error}`; errors[key] = (errors[key] ?? 0) + 1; });
  const map = doc.getMap('m');
  const text = doc.getText('t');
  map.observe((event) => {
    if (event.transaction.origin !== provider) return;
    const t = now();
    for (const key of event.keysChanged) {
      const value = map.get(key);
      if (value && value[0] !== id) {
        received += 1;
        latencies.push(t - value[2]);
        if (receivedAt !== null) atReceipt.push(receivedAt - value[2]);
      }
    }
  });
  await new Promise((resolve) => provider.on('synced', (s) => s && resolve()));
  if (observers && !observers.has(id)) sub.off('publication', provider._listeners.publication); // edits, applies nothing
  return {
    id, doc, provider,
    edit: (seq) => {
      edits.push(now());
      doc.transact(() => {
        text.insert(Math.floor(Math.random() * (text.length + 1)), 'k');
        map.set(`e${id}`, [id, seq, now()]);
      });
    },
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
const gcPauses = []; // V8's collections in the window (each stops this process's JavaScript)
new PerformanceObserver((list) => { for (const e of list.getEntries()) gcPauses.push(e.duration); }).observe({ entryTypes: ['gc'] });
const loopDelay = monitorEventLoopDelay({ resolution: 5 });
loopDelay.enable();
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
loopDelay.disable();
const rounded = latencies.map((l) => Math.round(l * 100) / 100);
const split = {
  atReceipt: atReceipt.map((l) => Math.round(l * 100) / 100),
  applyMs: pct(applyTimes),
  batch: { mean: batches.length ? Math.round(batches.reduce((a, b) => a + b, 0) / batches.length * 100) / 100 : 0, ...pct(batches) },
  applySeconds: applyTimes.reduce((a, b) => a + b, 0) / 1000,
  queuedMs: pct(queued),
  gcMs: { count: gcPauses.length, total: Math.round(gcPauses.reduce((a, b) => a + b, 0)), max: Math.round(Math.max(0, ...gcPauses)) },
  heapMiB: Math.round(process.memoryUsage().heapUsed / 2 ** 20),
  loopDelayMs: { p50: loopDelay.percentile(50) / 1e6, p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
};
// A pipe is written asynchronously: exit once the whole line is out.
process.stdout.write(JSON.stringify({ latencies: rounded, received, sent, docBytes, cpuSeconds, waitedSeconds, errors, rpcMs: pct(rpcTimes), ...split }) + '\n', () => process.exit(0));
