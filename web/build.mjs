// Builds the console into dist/ with one esbuild call: dist/app.js (+ app.css), index.html, build.json.
//   node build.mjs                 JSON encoding (the worker's today)
//   RESONANCE_CONSOLE_ENCODING=protobuf node build.mjs    the centrifuge-protobuf subprotocol
// build.json records a hash of every input (src/, index.html, this file, the lock file), so a test can
// tell whether a served bundle was built from the sources in the tree.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const root = dirname(fileURLToPath(import.meta.url));
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
  for (const path of inputs) {
    hash.update(relative(root, path).split("\\").join("/") + "\0");
    hash.update(readFileSync(path));
    hash.update("\0");
  }
  return hash.digest("hex");
}

mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(root, "src", "main.ts")],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome111", "firefox115", "safari16"],
  outfile: join(out, "app.js"),
  alias: encoding === "protobuf" ? { centrifuge: "centrifuge/build/protobuf" } : {},
  define: { __PROTOBUF__: String(encoding === "protobuf") },
  legalComments: "none",
  logLevel: "warning",
});
copyFileSync(join(root, "index.html"), join(out, "index.html"));
const js = readFileSync(join(out, "app.js"));
const css = readFileSync(join(out, "app.css"));
const info = {
  source_sha256: sourceHash(),
  encoding,
  bytes: { "app.js": js.length, "app.css": css.length },
  gzip_bytes: { "app.js": gzipSync(js, { level: 9 }).length, "app.css": gzipSync(css, { level: 9 }).length },
};
writeFileSync(join(out, "build.json"), JSON.stringify(info, null, 1) + "\n");
console.log(`console: ${out} (${encoding}) app.js ${info.bytes["app.js"]} B, gzip ${info.gzip_bytes["app.js"]} B`);
