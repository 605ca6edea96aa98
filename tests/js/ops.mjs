// The ops every centrifuge-js driver understands, shared by Node (client.mjs) and the Chromium page
// (browser.mjs): plain ESM with no Node imports, so the same file runs in both.
//
// createDriver({ Centrifuge, websocket, protobuf, out }) returns handle(cmd), which runs one op and emits its
// reply through out(obj): {"id": 1, "ok": true, "result": ...} or {"id": 1, "ok": false, "error": {...}}.
// SDK events go through out as {"event": "publication", ...}.
//
// Ops: hello {} (answered once the driver is ready), connect {url, token?, name?, refreshTokens?, minReconnectDelay?, maxReconnectDelay?, timeout?},
// subscribe {channel, token?, since?, joinLeave?, positioned?, recoverable?, timeout?}, unsubscribe {channel},
// publish {channel, data | b64}, presence {channel}, presenceStats {channel}, history {channel, limit?, since?,
// reverse?}, rpc {method, data | b64}, send {data | b64}, setToken {token}, disconnect {}, reconnect {}, close {}.
//
// In protobuf mode data travels as bytes: JSON data goes out as its UTF-8 JSON text (so JSON clients in the
// same channel read it as JSON), b64 as those raw bytes; incoming bytes are reported as data (parsed, when
// they are UTF-8 JSON) and b64, as the Java driver does.

const utf8 = new TextDecoder('utf-8', { fatal: true });

function toBase64(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

export function errorOf(err) {
  if (err && typeof err === 'object') {
    return { code: err.code ?? null, message: err.message ?? String(err), temporary: err.temporary ?? null };
  }
  return { code: null, message: String(err), temporary: null };
}

export function createDriver({ Centrifuge, websocket, protobuf, out, exit }) {
  let client = null;
  let nextToken = null;
  const subs = new Map();

  const outgoing = (cmd) => {
    if (!protobuf) return cmd.data;
    if (cmd.b64 !== undefined) return fromBase64(cmd.b64);
    return new TextEncoder().encode(JSON.stringify(cmd.data ?? null));
  };
  const incoming = (data) => {
    if (!protobuf) return { data: data ?? null };
    if (!(data instanceof Uint8Array)) return { data: data ?? null };
    let parsed = null;
    try { parsed = data.length ? JSON.parse(utf8.decode(data)) : null; } catch { parsed = null; }
    return { data: parsed, b64: toBase64(data) };
  };
  const info = (i) => {
    if (!i) return null;
    const o = { user: i.user, client: i.client };
    const present = (v) => v !== undefined && v !== null && !(v instanceof Uint8Array && v.length === 0);
    if (present(i.connInfo)) o.connInfo = incoming(i.connInfo).data;
    if (present(i.chanInfo)) o.chanInfo = incoming(i.chanInfo).data;
    return o;
  };

  function watchClient(c) {
    c.on('connecting', (ctx) => out({ event: 'connecting', code: ctx.code, reason: ctx.reason }));
    c.on('connected', (ctx) => out({ event: 'connected', client: ctx.client, transport: ctx.transport, ...incoming(ctx.data) }));
    c.on('disconnected', (ctx) => out({ event: 'disconnected', code: ctx.code, reason: ctx.reason }));
    c.on('error', (ctx) => out({ event: 'error', type: ctx.type, error: errorOf(ctx.error) }));
    c.on('message', (ctx) => out({ event: 'message', ...incoming(ctx.data) }));
    c.on('publication', (ctx) => out({ event: 'server_publication', channel: ctx.channel, ...incoming(ctx.data), offset: ctx.offset ?? null, info: info(ctx.info) }));
    c.on('subscribed', (ctx) => out({
      event: 'server_subscribed', channel: ctx.channel, recovered: ctx.recovered ?? false, wasRecovering: ctx.wasRecovering ?? false,
      recoverable: ctx.recoverable ?? false, positioned: ctx.positioned ?? false, streamPosition: ctx.streamPosition ?? null,
    }));
    c.on('unsubscribed', (ctx) => out({ event: 'server_unsubscribed', channel: ctx.channel }));
    c.on('join', (ctx) => out({ event: 'server_join', channel: ctx.channel, info: info(ctx.info) }));
    c.on('leave', (ctx) => out({ event: 'server_leave', channel: ctx.channel, info: info(ctx.info) }));
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
      event: 'publication', channel, ...incoming(ctx.data), offset: ctx.offset ?? null, info: info(ctx.info), tags: ctx.tags ?? null,
    }));
    s.on('join', (ctx) => out({ event: 'join', channel, info: info(ctx.info) }));
    s.on('leave', (ctx) => out({ event: 'leave', channel, info: info(ctx.info) }));
  }

  const history = (h) => ({
    ...h,
    publications: h.publications.map((p) => ({ ...incoming(p.data), offset: p.offset ?? null, info: info(p.info), tags: p.tags ?? null })),
  });
  const presence = (p) => ({ clients: Object.fromEntries(Object.entries(p.clients).map(([id, i]) => [id, info(i)])) });

  const ops = {
    async hello() {
      const runtime = typeof navigator !== 'undefined' && navigator.userAgent ? navigator.userAgent : `Node ${process.version}`;
      return { sdk: 'centrifuge-js', encoding: protobuf ? 'protobuf' : 'json', runtime };
    },
    async connect(cmd) {
      const options = { name: cmd.name ?? 'resonance-tests', minReconnectDelay: cmd.minReconnectDelay ?? 100, maxReconnectDelay: cmd.maxReconnectDelay ?? 1000 };
      if (websocket) options.websocket = websocket;
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
    async publish(cmd) { await subs.get(cmd.channel).publish(outgoing(cmd)); return {}; },
    async presence(cmd) { return presence(await subs.get(cmd.channel).presence()); },
    async presenceStats(cmd) { return await subs.get(cmd.channel).presenceStats(); },
    async history(cmd) {
      const opts = { limit: cmd.limit ?? -1 };
      if (cmd.since) opts.since = cmd.since;
      if (cmd.reverse) opts.reverse = true;
      return history(await subs.get(cmd.channel).history(opts));
    },
    async rpc(cmd) { return incoming((await client.rpc(cmd.method, outgoing(cmd))).data); },
    async send(cmd) { await client.send(outgoing(cmd)); return {}; },
    async setToken(cmd) { nextToken = cmd.token; return {}; },
    async disconnect() { client.disconnect(); return {}; },
    async reconnect(cmd) { client.connect(); await client.ready(cmd.timeout ?? 5000); return {}; },
    async close() { if (client) client.disconnect(); if (exit) setTimeout(exit, 10); return {}; },
  };

  return async function handle(cmd) {
    const op = ops[cmd.op];
    if (!op) { out({ id: cmd.id, ok: false, error: { code: null, message: `unknown op ${cmd.op}` } }); return; }
    try {
      out({ id: cmd.id, ok: true, result: (await op(cmd)) ?? null });
    } catch (e) {
      out({ id: cmd.id, ok: false, error: errorOf(e) });
    }
  };
}
