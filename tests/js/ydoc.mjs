// Real Yjs clients (npm yjs + y-protocols) on a real centrifuge-js connection, through the
// resonance-yjs provider (clients/yjs-provider), driven over stdin/stdout by the Python tests.
// Run with `node --preserve-symlinks` (the provider is linked from clients/, its yjs is ours).
//
// stdin: {"id", "op", ...}; stdout: replies {"id", "ok", "result"|"error"} and events.
// Ops: hello {} (answered once the driver is ready), connect {url, token, encoding?: json|protobuf}, open {channel, name?, fastMs?},
// edit {channel, ops: [[kind, pos, text]...], drop?: disconnect right after them},
// read {channel}, peers {channel}, calls {} (doc.send calls since the last `calls`: how many, and the most
// unanswered at once), disconnect {}, reconnect {}, close {}.
// An edit op is ["ins", pos, text] | ["app", 0, text] | ["del", pos, len] | ["set", key, value] on the text "t" / map "m";
// positions are taken modulo the current length, so random schedules are always valid.
import { Centrifuge } from 'centrifuge';
import { Centrifuge as ProtobufCentrifuge } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';
import readline from 'node:readline';
import { JSON_BYTES, ResonanceYjsProvider, Y } from 'resonance-yjs';

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
let client = null;
let protobuf = false;
const docs = new Map();
const calls = { total: 0, inFlight: 0, max: 0 }; // this client's doc.send calls

function contentOf(channel) {
  const { doc, provider } = docs.get(channel);
  return {
    text: doc.getText('t').toString(),
    map: doc.getMap('m').toJSON(),
    state: Buffer.from(Y.encodeStateVector(doc)).toString('base64'),
    synced: provider.synced,
    clientID: doc.clientID,
  };
}

const ops = {
  async hello() {
    return { sdk: 'centrifuge-js + resonance-yjs', encoding: 'json', runtime: `Node ${process.version}` };
  },
  async connect(cmd) {
    protobuf = cmd.encoding === 'protobuf'; // the SDK's protobuf build: data as bytes (the provider's JSON_BYTES codec)
    const Sdk = protobuf ? ProtobufCentrifuge : Centrifuge;
    client = new Sdk(cmd.url, { websocket: WebSocket, token: cmd.token, minReconnectDelay: 100, maxReconnectDelay: 500 });
    client.on('connected', (ctx) => out({ event: 'connected', client: ctx.client }));
    client.on('disconnected', (ctx) => out({ event: 'disconnected', code: ctx.code }));
    const rpc = client.rpc.bind(client);
    client.rpc = async (method, data) => {
      if (method !== 'doc.send') return rpc(method, data);
      calls.total += 1;
      calls.inFlight += 1;
      calls.max = Math.max(calls.max, calls.inFlight);
      try { return await rpc(method, data); } finally { calls.inFlight -= 1; }
    };
    client.connect();
    await client.ready(10000);
    return {};
  },
  async open(cmd) {
    const doc = new Y.Doc();
    const options = { ...(protobuf ? { codec: JSON_BYTES } : {}), ...(cmd.fastMs != null ? { fastMs: cmd.fastMs } : {}) };
    const provider = new ResonanceYjsProvider(client, cmd.channel, doc, options);
    provider.on('synced', (synced) => out({ event: 'synced', channel: cmd.channel, synced }));
    provider.on('error', (error) => out({ event: 'doc_error', channel: cmd.channel, code: error?.code ?? null, message: error?.message ?? String(error) }));
    provider.awareness.on('change', () => out({ event: 'awareness', channel: cmd.channel }));
    doc.on('update', (_, origin) => { if (origin === provider) out({ event: 'remote_update', channel: cmd.channel, at: Date.now() }); });
    if (cmd.name) provider.awareness.setLocalStateField('user', { name: cmd.name });
    docs.set(cmd.channel, { doc, provider });
    return {};
  },
  async edit(cmd) {
    const { doc, provider } = docs.get(cmd.channel);
    const text = doc.getText('t');
    const map = doc.getMap('m');
    for (const [kind, a, b] of cmd.ops) {
      if (kind === 'ins') text.insert(a % (text.length + 1), b);
      else if (kind === 'app') text.insert(text.length, b);
      else if (kind === 'del' && text.length > 0) { const at = a % text.length; text.delete(at, Math.min(b, text.length - at)); }
      else if (kind === 'set') map.set(String(a), b);
    }
    if (cmd.drop) client.disconnect(); // in the same turn: the doc.send calls just made go unanswered
    await provider._queue; // sent (or failed and queued for the resync)
    return contentOf(cmd.channel);
  },
  async read(cmd) { return contentOf(cmd.channel); },
  async flush(cmd) { await docs.get(cmd.channel).provider._queue; return contentOf(cmd.channel); },
  async peers(cmd) {
    const { provider } = docs.get(cmd.channel);
    return [...provider.awareness.getStates().entries()].map(([id, s]) => ({ id, name: s.user?.name ?? null }));
  },
  async calls() {
    const seen = { total: calls.total, max: calls.max };
    calls.total = 0;
    calls.max = calls.inFlight;
    return seen;
  },
  async disconnect() { client.disconnect(); return {}; },
  async reconnect() { client.connect(); await client.ready(10000); return {}; },
  async close() {
    for (const { provider } of docs.values()) provider.destroy();
    client?.disconnect();
    setTimeout(() => process.exit(0), 50);
    return {};
  },
};

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  const cmd = JSON.parse(line);
  try {
    out({ id: cmd.id, ok: true, result: (await ops[cmd.op](cmd)) ?? null });
  } catch (err) {
    out({ id: cmd.id, ok: false, error: { code: err?.code ?? null, message: err?.message ?? String(err) } });
  }
});
rl.on('close', () => process.exit(0));
