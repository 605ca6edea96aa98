// The client's own cost in bench/docs, without a server or a network: what one editor spends per
// update it receives, measured in one quiet process as CPU time (not wall time, so the machine's load
// does not inflate it). `node bench-apply.mjs '{"editors": 50, "edits": 5000}'` prints JSON.
//
// `editors` npm yjs documents edit as the benchmark's editors do (a character into a shared text at a
// random place, the editor's entry in a shared map), in turn; each update is received by every other
// editor as the provider receives a publication: the centrifuge-js push frame parsed (JSON), the
// base64 decoded, the y-protocols message read and Y.applyUpdate'd. `receiveUs` is that per update and
// editor (mean and p99 of a sample; one update per transaction, as at rest), `perEditorCores` what one editor needs at `rate` updates/s from
// each of the others, `allEditorsCores` what the benchmark's editors need together on one machine.
import * as Y from 'yjs';
import * as syncProtocol from 'y-protocols/sync';
import * as encoding from 'lib0/encoding';
import * as decoding from 'lib0/decoding';

const cfg = { editors: 50, edits: 5000, rate: 5, ...JSON.parse(process.argv[2] ?? '{}') };
const cpuUs = () => { const u = process.cpuUsage(); return u.user + u.system; };

const docs = Array.from({ length: cfg.editors }, () => new Y.Doc());
// Half the editors listen to 'update' as the provider did before it listened only during local
// transactions (Yjs then encodes every remote transaction's update too): `listeningUs` is their cost.
docs.forEach((d, i) => { if (i % 2) d.on('update', () => {}); });
const listening = { us: 0, n: 0 };
const frames = [];
let offset = 0;
const samples = [];
let totalUs = 0;
let applied = 0;
for (let seq = 0; seq < cfg.edits; seq += 1) {
  const id = seq % cfg.editors;
  const doc = docs[id];
  let update = null;
  const grab = (u) => { update = u; };
  doc.on('update', grab);
  doc.transact(() => {
    const text = doc.getText('t');
    text.insert(Math.floor(Math.random() * (text.length + 1)), 'k');
    doc.getMap('m').set(`e${id}`, [id, seq, Date.now()]);
  });
  doc.off('update', grab);
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, 0);
  syncProtocol.writeUpdate(encoder, update);
  const m = Buffer.from(encoding.toUint8Array(encoder)).toString('base64');
  offset += 1;
  const frame = JSON.stringify({ push: { channel: 'doc:bench', pub: { data: { m, from: `c${id}` }, offset } } });
  frames.push(frame.length);
  for (let other = 0; other < cfg.editors; other += 1) {
    if (other === id) continue;
    const t0 = cpuUs();
    const push = JSON.parse(frame); // what centrifuge-js does with each frame, then the provider:
    const message = new Uint8Array(Buffer.from(push.push.pub.data.m, 'base64'));
    const decoder = decoding.createDecoder(message);
    decoding.readVarUint(decoder);
    syncProtocol.readSyncMessage(decoder, encoding.createEncoder(), docs[other], 'remote');
    const spent = cpuUs() - t0;
    if (other % 2) { listening.us += spent; listening.n += 1; continue; }
    totalUs += spent;
    applied += 1;
    if (other % 8 === 0) samples.push(spent);
  }
}
samples.sort((a, b) => a - b);
const meanUs = totalUs / applied;
const perEditorUpdatesPerSecond = cfg.rate * (cfg.editors - 1);
process.stdout.write(JSON.stringify({
  editors: cfg.editors,
  edits: cfg.edits,
  applied,
  receiveUs: { mean: Math.round(meanUs * 10) / 10, p50: samples[Math.floor(samples.length / 2)], p99: samples[Math.floor(samples.length * 0.99)] },
  listeningUs: Math.round(listening.us / listening.n * 10) / 10,
  frameBytes: Math.round(frames.reduce((a, b) => a + b, 0) / frames.length),
  docBytes: Y.encodeStateAsUpdate(docs[0]).length,
  perEditorCores: Math.round(meanUs * perEditorUpdatesPerSecond / 1e4) / 100,
  allEditorsCores: Math.round(meanUs * perEditorUpdatesPerSecond * cfg.editors / 1e4) / 100,
  converged: docs.every((d) => d.getText('t').toString() === docs[0].getText('t').toString()),
}) + '\n');
