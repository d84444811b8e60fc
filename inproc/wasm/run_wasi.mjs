// Runs a wasm32-wasip1 command module under Node's V8 (the engine Envoy's
// V8 runtime embeds), for micro-benchmarks: node run_wasi.mjs file.wasm
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
const wasi = new WASI({ version: 'preview1', args: [], env: {} });
const mod = await WebAssembly.compile(await readFile(process.argv[2]));
// The proxy-wasm host calls the library links are never called here.
const env = Object.fromEntries(WebAssembly.Module.imports(mod)
  .filter((i) => i.module === 'env').map((i) => [i.name, () => { throw new Error(i.name); }]));
const inst = await WebAssembly.instantiate(mod, { ...wasi.getImportObject(), env });
// The library's _initialize (proxy-wasm's entry) is not for a command.
wasi.start({ exports: { _start: inst.exports._start, memory: inst.exports.memory } });
