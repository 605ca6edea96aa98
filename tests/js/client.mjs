// A real centrifuge-js client in Node, driven over stdin/stdout by the Python tests (tests/harness/jsclient.py).
//
//   node client.mjs [json|protobuf]     # protobuf: the SDK's protobuf build, centrifuge/build/protobuf
//
// stdin: one JSON op per line; stdout: replies and SDK events as JSON lines. The ops are in ops.mjs.
import readline from 'node:readline';
import WebSocket from 'ws';
import { createDriver, errorOf } from './ops.mjs';

const protobuf = process.argv[2] === 'protobuf';
const { Centrifuge } = protobuf ? await import('centrifuge/build/protobuf') : await import('centrifuge');
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const handle = createDriver({ Centrifuge, websocket: WebSocket, protobuf, out, exit: () => process.exit(0) });

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { out({ ok: false, error: errorOf(e) }); return; }
  handle(cmd);
});
rl.on('close', () => process.exit(0));
