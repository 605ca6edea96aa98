// A Yjs provider over an existing centrifuge-js connection to Resonance Liminal.
//
// The standard y-protocols messages (sync step 1/2, update, awareness, query awareness) travel
// base64-encoded: to the server with the `doc.send` RPC ({channel, messages: [b64...]}, answered
// with {messages: [b64...]}), from the server in the document channel's publications
// ({m: b64, from: <client id>}). See docs/protocol.md, "Shared documents".
//
//   const provider = new ResonanceYjsProvider(centrifuge, 'doc:plan', ydoc)   // options: {awareness, codec, window, fastMs}
//   provider.on('synced', () => ...); provider.awareness.setLocalStateField('user', {name})
//
// With centrifuge-js's protobuf build (centrifuge/build/protobuf) data crosses as bytes: pass
// `{ codec: JSON_BYTES }` (JSON text as bytes, as the server reads it from protobuf clients).
import * as Y from 'yjs';
import * as syncProtocol from 'y-protocols/sync';
import * as awarenessProtocol from 'y-protocols/awareness';
import * as encoding from 'lib0/encoding';
import * as decoding from 'lib0/decoding';
import { ObservableV2 } from 'lib0/observable';

const MSG_SYNC = 0;
const MSG_AWARENESS = 1;
const MSG_QUERY_AWARENESS = 3;
const RETRY_MS = 1000;
const WINDOW = 4; // doc.send calls unanswered at once, while round trips are fast:
const FAST_MS = 100; // the smoothed round trip under which they are
// After the I/O of this turn of the event loop: Node's setImmediate; in a browser a MessageChannel task
// (a timer would wait up to a second in a background tab).
const afterIo = typeof setImmediate === 'function' ? setImmediate : (() => {
  if (typeof MessageChannel !== 'function') return (f) => setTimeout(f, 0);
  const due = [];
  const channel = new MessageChannel();
  channel.port1.onmessage = () => due.shift()();
  return (f) => { due.push(f); channel.port2.postMessage(null); };
})();

const toB64 = (bytes) => Buffer.from(bytes).toString('base64');
const fromB64 = (text) => new Uint8Array(Buffer.from(text, 'base64'));
// In a browser: btoa over a binary string built in chunks (one spread of a whole document's step 2
// would overflow the call stack).
const btoaBytes = (bytes) => {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
};
const b64 = typeof Buffer === 'undefined'
  ? { to: btoaBytes, from: (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0)) }
  : { to: toB64, from: fromB64 };

/** Application data as JSON text in bytes: the codec for centrifuge-js's protobuf build. */
export const JSON_BYTES = {
  encode: (value) => new TextEncoder().encode(JSON.stringify(value)),
  decode: (data) => (data instanceof Uint8Array ? JSON.parse(new TextDecoder().decode(data)) : data),
};
const AS_IS = { encode: (value) => value, decode: (data) => data };

export class ResonanceYjsProvider extends ObservableV2 {
  constructor(centrifuge, channel, doc, { awareness = new awarenessProtocol.Awareness(doc), codec = AS_IS, window = WINDOW, fastMs = FAST_MS } = {}) {
    super();
    this.codec = codec;
    this.centrifuge = centrifuge;
    this.channel = channel;
    this.doc = doc;
    this.awareness = awareness;
    this.synced = false;
    // Up to `window` doc.send calls unanswered at once (answers applied in order) while the smoothed
    // round trip is under `fastMs`: an edit goes at once instead of waiting for the previous call's
    // answer. Yjs updates commute and applying one twice changes nothing, so their order across the
    // calls in flight does not matter.
    this.window = Math.max(1, window);
    this.fastMs = fastMs;
    this._rtt = 0; // the smoothed doc.send round trip, ms
    this._inFlight = []; // {done, reply, error}, oldest first
    this._queue = Promise.resolve();
    this._idle = null;
    this._destroyed = false;
    this._pending = [];
    this._pendingUpdates = [];
    this._incoming = [];
    // Yjs encodes every transaction's update when anyone listens to 'update' — for the remote ones
    // too, which the provider only drops: it listens from the start of a local transaction until its
    // update (half of what applying a remote update costs, measured by bench/docs).
    this._watching = false;
    this._onBeforeTransaction = (transaction) => {
      if (transaction.origin !== this && !this._watching) {
        this._watching = true;
        doc.on('update', this._onUpdate);
      }
    };
    this._onUpdate = (update, origin) => {
      this._watching = false;
      doc.off('update', this._onUpdate);
      if (origin !== this) this.send([], [update]);
    };
    this._onAwareness = ({ added, updated, removed }, origin) => {
      if (origin !== 'local') return;
      const changed = added.concat(updated, removed);
      this.send([awarenessMessage(awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed))]);
    };
    doc.on('beforeTransaction', this._onBeforeTransaction);
    awareness.on('update', this._onAwareness);
    this.sub = centrifuge.getSubscription(channel) ?? centrifuge.newSubscription(channel);
    this._listeners = {
      publication: (ctx) => this._received(b64.from(this.codec.decode(ctx.data).m)),
      // (Re)subscribed, also after a reconnect: sync again; what was edited offline goes up in step 2.
      subscribed: () => this.resync(),
      unsubscribed: () => this._setSynced(false),
    };
    for (const [event, listener] of Object.entries(this._listeners)) this.sub.on(event, listener);
    this.sub.subscribe();
  }

  /** Send y-protocols messages, in order: each `doc.send` goes at once while fewer than `window` are
   * unanswered (one, while the smoothed round trip is `fastMs` or more); past that the next ones wait
   * and go together (local updates merged into one). The
   * answers are applied in the order the calls were made. Offline, nothing is sent: the resync after
   * the next subscribe carries what changed meanwhile. Returns a promise of the moment nothing is
   * waiting or unanswered. */
  send(messages, updates = []) {
    this._pending.push(...messages);
    this._pendingUpdates.push(...updates);
    this._pump();
    return this._queue;
  }

  _pump() {
    // The whole window while round trips are fast; one call at a time once they are slow (a backlog: the
    // server or this machine is behind, and more, smaller calls would add to it: what waits goes merged).
    const open = this._rtt < this.fastMs ? this.window : 1;
    while (!this._destroyed && (this._pending.length || this._pendingUpdates.length) && this._inFlight.length < open) {
      const messages = this._pending.splice(0, 31);
      const updates = this._pendingUpdates.splice(0);
      if (updates.length) messages.push(syncMessage(syncProtocol.writeUpdate, updates.length > 1 ? Y.mergeUpdates(updates) : updates[0]));
      if (this.centrifuge.state !== 'connected' || this.sub.state !== 'subscribed') {
        this._setSynced(false);
        continue;
      }
      const call = { done: false, reply: null, error: null, at: Date.now() };
      this._inFlight.push(call);
      let sent;
      try {
        sent = this.centrifuge.rpc('doc.send', this.codec.encode({ channel: this.channel, messages: messages.map(b64.to) }));
      } catch (error) {
        sent = Promise.reject(error);
      }
      sent.then((reply) => { call.reply = reply; }, (error) => { call.error = error ?? new Error('doc.send failed'); })
        .then(() => {
          call.done = true;
          this._rtt += (Date.now() - call.at - this._rtt) / 8; // smoothed as TCP smooths its round trip
          this._answered();
        });
    }
    if (this._inFlight.length && this._idle === null) {
      this._queue = new Promise((resolve) => { this._idle = resolve; });
    } else if (!this._inFlight.length && this._idle !== null) {
      const idle = this._idle;
      this._idle = null;
      idle();
    }
  }

  /** The answers at the head of the calls, in order; then what waited goes. */
  _answered() {
    while (this._inFlight.length && this._inFlight[0].done) {
      const { reply, error } = this._inFlight.shift();
      try {
        if (error !== null) throw error;
        for (const m of this.codec.decode(reply.data).messages) this._receive(b64.from(m));
      } catch (failure) {
        this.emit('error', [failure]);
        // 103 (no access) and 106 (size limit) are answers; anything else (a timeout, 100 from a store
        // that failed) lost what was sent: sync again soon, the exchange of steps carries it.
        if (this.sub.state === 'subscribed' && failure && failure.code !== 106 && failure.code !== 103) {
          this._setSynced(false);
          clearTimeout(this._retry);
          this._retry = setTimeout(() => this.resync(), RETRY_MS);
        }
      }
    }
    this._pump();
  }

  resync() {
    const step1 = syncMessage(syncProtocol.writeSyncStep1, this.doc);
    const local = this.awareness.getLocalState() !== null
      ? [awarenessMessage(awarenessProtocol.encodeAwarenessUpdate(this.awareness, [this.doc.clientID]))]
      : [];
    return this.send([step1, ...local, queryAwareness()]);
  }

  /** A publication's message: applied with the others that arrived in the same turn of the event
   * loop, in one transaction (one cleanup and one round of observers for all: under load, several). */
  _received(message) {
    this._incoming.push(message);
    if (this._incoming.length === 1) {
      afterIo(() => {
        const messages = this._incoming.splice(0); // none after destroy()
        if (!messages.length) return;
        Y.transact(this.doc, () => {
          for (const m of messages) {
            try { this._receive(m); } catch (error) { this.emit('error', [error]); } // the others still apply
          }
        }, this);
      });
    }
  }

  _receive(message) {
    const decoder = decoding.createDecoder(message);
    const type = decoding.readVarUint(decoder);
    if (type === MSG_SYNC) {
      const encoder = encoding.createEncoder();
      encoding.writeVarUint(encoder, MSG_SYNC);
      const kind = syncProtocol.readSyncMessage(decoder, encoder, this.doc, this);
      if (kind === syncProtocol.messageYjsSyncStep1) {
        this.send([encoding.toUint8Array(encoder)]); // the server's step 1: answer with what it lacks
      } else if (kind === syncProtocol.messageYjsSyncStep2) {
        this._setSynced(true);
      }
    } else if (type === MSG_AWARENESS) {
      awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(decoder), this);
    }
  }

  _setSynced(synced) {
    if (this.synced !== synced) {
      this.synced = synced;
      this.emit('synced', [synced]);
      this.emit('sync', [synced]);
    }
  }

  destroy() {
    this._destroyed = true;
    this._inFlight = []; // answers arriving later are not applied
    if (this._idle !== null) { this._idle(); this._idle = null; } // nobody waits for them either
    clearTimeout(this._retry);
    this._incoming = [];
    awarenessProtocol.removeAwarenessStates(this.awareness, [this.doc.clientID], 'local');
    this.doc.off('beforeTransaction', this._onBeforeTransaction);
    this.doc.off('update', this._onUpdate);
    this.awareness.off('update', this._onAwareness);
    // Only this provider's listeners: the subscription may be reused (the client keeps it by channel).
    for (const [event, listener] of Object.entries(this._listeners)) this.sub.off(event, listener);
    this.sub.unsubscribe();
    super.destroy();
  }
}

function syncMessage(write, arg) {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, MSG_SYNC);
  write(encoder, arg);
  return encoding.toUint8Array(encoder);
}

function awarenessMessage(update) {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, MSG_AWARENESS);
  encoding.writeVarUint8Array(encoder, update);
  return encoding.toUint8Array(encoder);
}

function queryAwareness() {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, MSG_QUERY_AWARENESS);
  return encoding.toUint8Array(encoder);
}

export { Y };
