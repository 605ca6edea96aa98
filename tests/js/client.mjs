// A real centrifuge-js client driven over stdin/stdout by the Python tests.
//
// stdin:  one JSON command per line: {"id": 1, "op": "connect", ...}
// stdout: one JSON object per line: replies {"id": 1, "ok": true, "result": ...} or {"id": 1, "ok": false,
//         "error": {...}}, and events {"event": "publication", ...} as the SDK emits them.
//
// Ops: connect {url, token?, name?, getTokenUrl?}, subscribe {channel, token?, since?, joinLeave?, positioned?,
// recoverable?}, unsubscribe {channel}, publish {channel, data}, presence {channel}, presenceStats {channel},
// history {channel, limit?, since?, reverse?}, rpc {method, data}, send {data}, setToken {token},
// disconnect {}, reconnect {}, close {}.
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import readline from 'node:readline';

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
let client = null;
let nextToken = null;
const subs = new Map();

function errorOf(err) {
  if (err && typeof err === 'object') {
    return { code: err.code ?? null, message: err.message ?? String(err), temporary: err.temporary ?? null };
  }
  return { code: null, message: String(err), temporary: null };
}

function watchClient(c) {
  c.on('connecting', (ctx) => out({ event: 'connecting', code: ctx.code, reason: ctx.reason }));
  c.on('connected', (ctx) => out({ event: 'connected', client: ctx.client, transport: ctx.transport, data: ctx.data ?? null }));
  c.on('disconnected', (ctx) => out({ event: 'disconnected', code: ctx.code, reason: ctx.reason }));
  c.on('error', (ctx) => out({ event: 'error', type: ctx.type, error: errorOf(ctx.error) }));
  c.on('message', (ctx) => out({ event: 'message', data: ctx.data }));
  c.on('publication', (ctx) => out({ event: 'server_publication', channel: ctx.channel, data: ctx.data, offset: ctx.offset ?? null }));
  c.on('subscribed', (ctx) => out({ event: 'server_subscribed', channel: ctx.channel, recovered: ctx.recovered ?? false }));
}

function watchSub(channel, s) {
  s.on('subscribing', (ctx) => out({ event: 'subscribing', channel, code: ctx.code, reason: ctx.reason }));
  s.on('subscribed', (ctx) => out({
    event: 'subscribed', channel, recoverable: ctx.recoverable ?? false, positioned: ctx.positioned ?? false,
    streamPosition: ctx.streamPosition ?? null, wasRecovering: ctx.wasRecovering ?? false, recovered: ctx.recovered ?? false,
  }));
  s.on('unsubscribed', (ctx) => out({ event: 'unsubscribed', channel, code: ctx.code, reason: ctx.reason }));
  s.on('error', (ctx) => out({ event: 'sub_error', channel, type: ctx.type, error: errorOf(ctx.error) }));
  s.on('publication', (ctx) => out({
    event: 'publication', channel, data: ctx.data, offset: ctx.offset ?? null, info: ctx.info ?? null, tags: ctx.tags ?? null,
  }));
  s.on('join', (ctx) => out({ event: 'join', channel, info: ctx.info }));
  s.on('leave', (ctx) => out({ event: 'leave', channel, info: ctx.info }));
}

const ops = {
  async connect(cmd) {
    const options = { websocket: WebSocket, name: cmd.name ?? 'resonance-tests', minReconnectDelay: cmd.minReconnectDelay ?? 100, maxReconnectDelay: cmd.maxReconnectDelay ?? 1000 };
    if (cmd.token) options.token = cmd.token;
    if (cmd.refreshTokens) {
      // The SDK calls getToken when the server says the token expired; the test supplies the next one.
      options.getToken = async () => {
        out({ event: 'get_token' });
        for (let i = 0; i < 200 && nextToken === null; i++) await new Promise((r) => setTimeout(r, 25));
        const t = nextToken; nextToken = null; return t ?? '';
      };
    }
    client = new Centrifuge(cmd.url, options);
    watchClient(client);
    // ready() resolves without a context, so take the client id from the 'connected' event.
    let clientId = null;
    client.once('connected', (ctx) => { clientId = ctx.client; });
    client.connect();
    await client.ready(cmd.timeout ?? 5000);
    return { client: clientId };
  },
  async subscribe(cmd) {
    const options = {};
    if (cmd.token) options.token = cmd.token;
    if (cmd.since) options.since = cmd.since;
    if (cmd.joinLeave) options.joinLeave = true;
    if (cmd.positioned) options.positioned = true;
    if (cmd.recoverable) options.recoverable = true;
    const s = client.newSubscription(cmd.channel, options);
    subs.set(cmd.channel, s);
    watchSub(cmd.channel, s);
    s.subscribe();
    await s.ready(cmd.timeout ?? 5000);
    return {};
  },
  async unsubscribe(cmd) { subs.get(cmd.channel).unsubscribe(); client.removeSubscription(subs.get(cmd.channel)); subs.delete(cmd.channel); return {}; },
  async publish(cmd) { return await subs.get(cmd.channel).publish(cmd.data); },
  async presence(cmd) { return await subs.get(cmd.channel).presence(); },
  async presenceStats(cmd) { return await subs.get(cmd.channel).presenceStats(); },
  async history(cmd) {
    const opts = { limit: cmd.limit ?? -1 };
    if (cmd.since) opts.since = cmd.since;
    if (cmd.reverse) opts.reverse = true;
    return await subs.get(cmd.channel).history(opts);
  },
  async rpc(cmd) { return await client.rpc(cmd.method, cmd.data); },
  async send(cmd) { await client.send(cmd.data); return {}; },
  async setToken(cmd) { nextToken = cmd.token; return {}; },
  async disconnect() { client.disconnect(); return {}; },
  async reconnect() { client.connect(); await client.ready(5000); return {}; },
  async close() { if (client) client.disconnect(); setTimeout(() => process.exit(0), 10); return {}; },
};

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  if (!line.trim()) return;
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { out({ ok: false, error: errorOf(e) }); return; }
  const op = ops[cmd.op];
  if (!op) { out({ id: cmd.id, ok: false, error: { code: null, message: `unknown op ${cmd.op}` } }); return; }
  try {
    out({ id: cmd.id, ok: true, result: (await op(cmd)) ?? null });
  } catch (e) {
    out({ id: cmd.id, ok: false, error: errorOf(e) });
  }
});
rl.on('close', () => { if (client) client.disconnect(); process.exit(0); });
