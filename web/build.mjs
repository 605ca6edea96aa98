// Builds the console into dist/ with one esbuild call: dist/assets/app-<hash>.js (+ .css, each with a
// gzipped copy the worker sends to browsers that accept it), index.html naming them, build.json.
// The worker serves index.html with no-cache and the hashed assets with a year's immutable cache.
//   node build.mjs                 JSON encoding (the worker's today)
//   RESONANCE_CONSOLE_ENCODING=protobuf node build.mjs    the centrifuge-protobuf subprotocol
// build.json records a hash of every input (src/, index.html, this file, the lock file, the provider), so a test can
// tell whether a served bundle was built from the sources in the tree.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const root = dirname(fileURLToPath(import.meta.url));
// The rooms' shared notes use the resonance-yjs provider from this repository (clients/yjs-provider);
// its yjs, y-protocols and lib0 come from web/node_modules (one copy of yjs in the bundle).
const provider = join(root, "..", "clients", "yjs-provider", "index.mjs");
const out = process.env.RESONANCE_CONSOLE_OUT ?? join(root, "dist");
const encoding = process.env.RESONANCE_CONSOLE_ENCODING ?? "json"; // the one-line switch: "json" | "protobuf"
if (!["json", "protobuf"].includes(encoding)) throw new Error(`encoding must be json or protobuf, got ${encoding}`);

function files(dir) {
  return readdirSync(dir)
    .flatMap((name) => (statSync(join(dir, name)).isDirectory() ? files(join(dir, name)) : [join(dir, name)]))
    .sort();
}

/** The inputs' hash, as tests/browser recomputes it (same files, same order, same framing). */
export function sourceHash() {
  const hash = createHash("sha256");
  const inputs = [...files(join(root, "src")), join(root, "index.html"), join(root, "build.mjs"), join(root, "package-lock.json")];
  for (const path of [...inputs, provider]) {
    const name = path === provider ? "resonance-yjs/index.mjs" : relative(root, path).split("\\").join("/");
    hash.update(name + "\0");
    hash.update(readFileSync(path));
    hash.update("\0");
  }
  return hash.digest("hex");
}

const assets = join(out, "assets");
rmSync(assets, { recursive: true, force: true }); // only this build's hashed files stay
mkdirSync(assets, { recursive: true });
const result = await build({
  entryPoints: [join(root, "src", "main.ts")],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome111", "firefox115", "safari16"],
  outdir: assets,
  entryNames: "app-[hash]",
  metafile: true,
  alias: { "resonance-yjs": provider, ...(encoding === "protobuf" ? { centrifuge: "centrifuge/build/protobuf" } : {}) },
  nodePaths: [join(root, "node_modules")],
  define: { __PROTOBUF__: String(encoding === "protobuf") },
  legalComments: "none",
  logLevel: "warning",
});
const outputs = Object.keys(result.metafile.outputs).map((path) => basename(path));
const named = (ext) => {
  const found = outputs.filter((name) => name.endsWith(ext));
  if (found.length !== 1) throw new Error(`expected one ${ext} output, got ${found.join(", ") || "none"}`);
  return found[0];
};
const built = { js: named(".js"), css: named(".css") };
const html = readFileSync(join(root, "index.html"), "utf8");
if (!html.includes('href="app.css"') || !html.includes('src="app.js"')) throw new Error("index.html must name app.css and app.js");
writeFileSync(
  join(out, "index.html"),
  html.replace('href="app.css"', `href="assets/${built.css}"`).replace('src="app.js"', `src="assets/${built.js}"`),
);
const info = { source_sha256: sourceHash(), encoding, assets: built, bytes: {}, gzip_bytes: {} };
for (const name of Object.values(built)) {
  const body = readFileSync(join(assets, name));
  const gzipped = gzipSync(body, { level: 9 });
  writeFileSync(join(assets, name + ".gz"), gzipped);
  info.bytes[name] = body.length;
  info.gzip_bytes[name] = gzipped.length;
}
writeFileSync(join(out, "build.json"), JSON.stringify(info, null, 1) + "\n");
console.log(`console: ${out} (${encoding}) ${built.js} ${info.bytes[built.js]} B, gzip ${info.gzip_bytes[built.js]} B`);
