// sessions.mjs drives sandboxd's MCP session tools with the real npm
// client, @modelcontextprotocol/sdk, as an agent host would: a session,
// cells that share state, a figure that comes back as an image, files both
// ways, closing. Same command line and output as client.mjs:
//
//	node tests/mcp/sessions.mjs stdio /path/to/sandboxd [flags of `sandboxd mcp`...]
//	node tests/mcp/sessions.mjs http http://127.0.0.1:PORT/mcp [token]
//
// The plot cell uses matplotlib; with SANDBOXD_MCP_NO_MATPLOTLIB=1 (a host
// without it) it displays a PNG the cell writes with zlib instead, and says
// so. tests/mcp_session_test.go runs it.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const usage = "usage: node sessions.mjs stdio SANDBOXD [FLAGS...] | node sessions.mjs http URL [TOKEN]";
const [mode, target, ...rest] = process.argv.slice(2);
if (!target || (mode !== "stdio" && mode !== "http") || (mode === "http" && rest.length > 1)) {
  console.error(usage);
  process.exit(2);
}
const matplotlib = process.env.SANDBOXD_MCP_NO_MATPLOTLIB !== "1";

// Client-side bounds on each request (ms): a hung server fails a check
// instead of hanging the test. Starting a session and importing
// matplotlib take the longest.
const CALL_TIMEOUT = 30_000;
const SLOW_CALL_TIMEOUT = 90_000;

let failures = 0;
let n = 0;

// check runs one named check; fn returns a list of problems (empty: ok)
// or an object {problems, note} whose note is added to the "ok" line. A
// check that depends on an earlier one is not run when that one failed.
async function check(name, fn) {
  n++;
  let problems, note;
  try {
    const r = await fn();
    if (Array.isArray(r)) {
      problems = r;
    } else {
      ({ problems, note } = r);
    }
  } catch (e) {
    problems = [`threw: ${e && e.stack ? e.stack : e}`];
  }
  if (problems.length === 0) {
    console.log(`ok - ${name}${note ? ` (${note})` : ""}`);
    return true;
  }
  failures++;
  console.log(`not ok - ${name}`);
  for (const p of problems) {
    console.log(`    ${String(p).replaceAll("\n", "\n    ")}`);
  }
  return false;
}

const show = (v) => {
  const s = JSON.stringify(v);
  return s && s.length > 2000 ? `${s.slice(0, 2000)}... [${s.length} chars]` : s;
};

const text = (res) =>
  (res.content ?? [])
    .filter((c) => c.type === "text")
    .map((c) => c.text)
    .join("\n");

const isErrorFalse = (res) => res.isError === undefined || res.isError === false;

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

let transport;
let stderrText = "";
if (mode === "stdio") {
  transport = new StdioClientTransport({ command: target, args: ["mcp", ...rest], stderr: "pipe" });
  transport.stderr.on("data", (b) => {
    stderrText += b.toString();
  });
} else {
  const opts = {};
  if (rest[0]) {
    opts.requestInit = { headers: { Authorization: `Bearer ${rest[0]}` } };
  }
  transport = new StreamableHTTPClientTransport(new URL(target), opts);
}

const client = new Client({ name: "sandboxd-mcp-sessions", version: "1.0.0" });

const call = (name, args, timeout = CALL_TIMEOUT) => client.callTool({ name, arguments: args }, undefined, { timeout });

// A cell that draws a figure; without matplotlib, one that displays a
// 200x150 PNG it builds itself.
const plotCell = matplotlib
  ? ["import matplotlib.pyplot as plt", "plt.plot([1, 4, 9, 16])", "plt.title('squares')", "plt.show()", ""].join("\n")
  : [
      "import struct, zlib",
      "def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))",
      "w, h = 200, 150",
      "raw = b''.join(b'\\x00' + b''.join(bytes([x % 256, y % 256, 128]) for x in range(w)) for y in range(h))",
      "png = b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')",
      "class Img:",
      "    def _repr_png_(self): return png",
      "display(Img())",
      "",
    ].join("\n");

async function main() {
  const connected = await check(`initialize over ${mode}`, async () => {
    await client.connect(transport, { timeout: CALL_TIMEOUT });
    const p = [];
    if (client.getServerVersion()?.name !== "sandboxd") p.push(`serverInfo ${show(client.getServerVersion())}`);
    if (!/create_session/.test(client.getInstructions() ?? "")) p.push(`the instructions do not mention sessions: ${show(client.getInstructions())}`);
    return p;
  });
  if (!connected) return;

  await check("tools/list: the session tools, with their schemas", async () => {
    const { tools } = await client.listTools(undefined, { timeout: CALL_TIMEOUT });
    const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
    const p = [];
    const want = {
      create_session: [],
      run_in_session: ["session_id", "code"],
      upload_file: ["session_id", "path", "content"],
      download_file: ["session_id", "path"],
      close_session: ["session_id"],
    };
    for (const [name, required] of Object.entries(want)) {
      const t = byName[name];
      if (!t) {
        p.push(`no ${name} tool in ${show(tools.map((t) => t.name))}`);
        continue;
      }
      if (!t.description) p.push(`${name} has no description`);
      if (!t.outputSchema) p.push(`${name} has no outputSchema`);
      const got = [...(t.inputSchema?.required ?? [])].sort().join(",");
      if (got !== [...required].sort().join(",")) p.push(`${name} requires ${show(t.inputSchema?.required)}, want ${show(required)}`);
    }
    return p;
  });

  let id;
  const created = await check("create_session: a python session with a file", async () => {
    const res = await call("create_session", { timeout: "60s", memory: "512MiB", files: [{ name: "data.csv", content: "a,b\n1,2\n" }] }, SLOW_CALL_TIMEOUT);
    const sc = res.structuredContent ?? {};
    const p = [];
    id = sc.session_id;
    if (!isErrorFalse(res)) p.push(`isError = ${show(res.isError)}: ${show(text(res))}`);
    if (!id) p.push(`no session_id in ${show(sc)}`);
    if (sc.language !== "python" || !/^3\./.test(sc.version ?? "")) p.push(`language/version ${show(sc.language)} ${show(sc.version)}`);
    if (sc.timeout !== "1m0s") p.push(`timeout ${show(sc.timeout)}, want "1m0s"`);
    if (id && !text(res).includes(id)) p.push(`the text does not give the id: ${show(text(res))}`);
    return { problems: p, note: id };
  });
  if (!created) return;

  await check("run_in_session: state persists between cells", async () => {
    const p = [];
    const first = await call("run_in_session", { session_id: id, code: "x = 20\nprint('set')\n" });
    if (!isErrorFalse(first) || first.structuredContent?.stdout !== "set\n" || first.structuredContent?.status !== "ok") {
      p.push(`first cell: ${show(first)}`);
    }
    const second = await call("run_in_session", { session_id: id, code: "x * 2 + len(open('data.csv').read().splitlines())" });
    const sc = second.structuredContent ?? {};
    if (!isErrorFalse(second)) p.push(`second cell isError: ${show(text(second))}`);
    if (sc.result?.["text/plain"] !== "42") p.push(`second cell's value ${show(sc.result)}, want "42"`);
    if (!text(second).includes("42")) p.push(`the text lacks the value: ${show(text(second))}`);
    if (sc.cell !== 2 || sc.state !== "idle") p.push(`cell ${show(sc.cell)} state ${show(sc.state)}`);
    return p;
  });

  await check("run_in_session: an exception is a tool error with its traceback", async () => {
    const res = await call("run_in_session", { session_id: id, code: "def f():\n    return 1/0\nf()\n" });
    const p = [];
    const t = text(res);
    if (res.isError !== true) p.push(`isError = ${show(res.isError)}`);
    if (!t.includes("ZeroDivisionError") || !t.includes("Traceback")) p.push(`the text lacks the traceback: ${show(t)}`);
    if (res.structuredContent?.error?.name !== "ZeroDivisionError") p.push(`structuredContent.error ${show(res.structuredContent?.error)}`);
    return p;
  });

  await check(`run_in_session: a plot comes back as an image (${matplotlib ? "matplotlib" : "a PNG built by the cell: no matplotlib here"})`, async () => {
    const res = await call("run_in_session", { session_id: id, code: plotCell }, SLOW_CALL_TIMEOUT);
    const p = [];
    if (!isErrorFalse(res)) p.push(`isError: ${show(text(res))}`);
    const imgs = (res.content ?? []).filter((c) => c.type === "image");
    if (imgs.length !== 1) {
      p.push(`${imgs.length} image items, want 1: ${show(res)}`);
      return p;
    }
    const img = imgs[0];
    if (img.mimeType !== "image/png") p.push(`mimeType ${show(img.mimeType)}`);
    const bytes = Buffer.from(img.data, "base64");
    if (!bytes.subarray(0, 8).equals(PNG_SIGNATURE)) p.push(`the data does not decode to a PNG: starts ${show(bytes.subarray(0, 8).toString("hex"))}`);
    const width = bytes.readUInt32BE(16);
    const height = bytes.readUInt32BE(20);
    if (width <= 100 || height <= 100) p.push(`the image is ${width}x${height}`);
    if (JSON.stringify(res.structuredContent ?? {}).includes("iVBOR") || text(res).includes("iVBOR")) p.push("the PNG's base64 is also in the text or structuredContent");
    if (res.structuredContent?.images !== 1) p.push(`structuredContent.images = ${show(res.structuredContent?.images)}`);
    return { problems: p, note: `${width}x${height}, ${bytes.length} bytes` };
  });

  await check("upload_file and download_file: text and binary round trips", async () => {
    const p = [];
    const content = "héllo wörld\nline 2\n";
    const up = await call("upload_file", { session_id: id, path: "in/notes.txt", content });
    if (!isErrorFalse(up) || up.structuredContent?.size !== Buffer.byteLength(content)) p.push(`upload_file: ${show(up)}`);
    const cell = await call("run_in_session", { session_id: id, code: "open('out.txt', 'w').write(open('in/notes.txt').read().upper())" });
    if (!isErrorFalse(cell)) p.push(`the cell that reads the upload: ${show(text(cell))}`);
    const down = await call("download_file", { session_id: id, path: "out.txt" });
    if (!isErrorFalse(down) || text(down) !== content.toUpperCase()) p.push(`download_file out.txt: ${show(down)}`);

    const blob = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const upb = await call("upload_file", { session_id: id, path: "b.bin", content: blob.toString("base64"), encoding: "base64" });
    if (!isErrorFalse(upb) || upb.structuredContent?.size !== 256) p.push(`upload_file base64: ${show(upb)}`);
    const downb = await call("download_file", { session_id: id, path: "b.bin" });
    const res = (downb.content ?? []).find((c) => c.type === "resource");
    if (!isErrorFalse(downb) || !res || !Buffer.from(res.resource?.blob ?? "", "base64").equals(blob)) p.push(`download_file b.bin: ${show(downb)}`);
    return p;
  });

  await check("download_file: ../../etc/passwd is a tool error", async () => {
    const res = await call("download_file", { session_id: id, path: "../../etc/passwd" });
    const p = [];
    if (res.isError !== true) p.push(`isError = ${show(res.isError)}: ${show(res)}`);
    if (text(res).includes("root:")) p.push("the host's /etc/passwd came back");
    return { problems: p, note: show(text(res)) };
  });

  await check("close_session, then run_in_session on it is a tool error", async () => {
    const p = [];
    const res = await call("close_session", { session_id: id });
    if (!isErrorFalse(res)) p.push(`close_session: ${show(res)}`);
    const after = await call("run_in_session", { session_id: id, code: "x" });
    if (after.isError !== true || !/not found/.test(text(after))) p.push(`run_in_session after close: ${show(after)}`);
    return p;
  });

  // Models forget to close sessions: this one is left for the server to
  // end when it stops (the Go test checks that nothing of it remains).
  await check("a session left open at the end", async () => {
    const res = await call("create_session", {}, SLOW_CALL_TIMEOUT);
    const left = res.structuredContent?.session_id;
    if (!isErrorFalse(res) || !left) return [`create_session: ${show(res)}`];
    const cell = await call("run_in_session", { session_id: left, code: "open('f', 'w').write('x')\nx = 1\nx" });
    const list = await call("list_sessions", {});
    const p = [];
    if (!isErrorFalse(cell)) p.push(`run_in_session: ${show(cell)}`);
    if (!(list.structuredContent?.sessions ?? []).some((s) => s.session_id === left)) p.push(`list_sessions lacks ${left}: ${show(list)}`);
    if ((list.structuredContent?.sessions ?? []).some((s) => s.session_id === id)) p.push(`list_sessions still has the closed ${id}`);
    return { problems: p, note: left };
  });
}

try {
  await main();
} catch (e) {
  failures++;
  console.log(`not ok - unexpected: ${e && e.stack ? e.stack : e}`);
}
try {
  await client.close();
} catch (e) {
  failures++;
  console.log(`not ok - close: ${e && e.stack ? e.stack : e}`);
}
if (failures > 0 && stderrText) {
  console.log(`# sandboxd mcp stderr:\n${stderrText.replace(/^/gm, "#   ")}`);
}
console.log(`# ${n - failures}/${n} checks passed over ${mode}`);
process.exit(failures > 0 ? 1 : 0);
