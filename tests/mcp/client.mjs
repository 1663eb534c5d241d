// client.mjs drives sandboxd's MCP server with the real npm client,
// @modelcontextprotocol/sdk, unchanged, exactly as an agent host would:
//
//	node tests/mcp/client.mjs stdio /path/to/sandboxd [flags of `sandboxd mcp`...]
//	node tests/mcp/client.mjs http http://127.0.0.1:PORT/mcp [token]
//
// stdio spawns `sandboxd mcp` (with the flags given, e.g. --state-dir) over
// the SDK's StdioClientTransport; http talks to `sandboxd serve` at /mcp over
// StreamableHTTPClientTransport, sending "Authorization: Bearer TOKEN" when
// a token is given.
//
// It prints one line per check ("ok - ..." or "not ok - ...", TAP style) and
// exits 1 if any check failed, 2 on a usage error. tests/mcp_test.go runs
// it; `npm ci --prefix tests/mcp` installs the client.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";

const usage = "usage: node client.mjs stdio SANDBOXD [FLAGS...] | node client.mjs http URL [TOKEN]";
const [mode, target, ...rest] = process.argv.slice(2);
if (!target || (mode !== "stdio" && mode !== "http") || (mode === "http" && rest.length > 1)) {
  console.error(usage);
  process.exit(2);
}

// Client-side bounds on each request (ms): a hung server fails a check
// instead of hanging the test.
const CALL_TIMEOUT = 30_000;
const BIG_CALL_TIMEOUT = 60_000;

let failures = 0;
let n = 0;

// check runs one named check; fn returns a list of problems (empty: ok)
// or an object {problems, note} whose note is added to the "ok" line.
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

// text joins a tool result's text content.
const text = (res) =>
  (res.content ?? [])
    .filter((c) => c.type === "text")
    .map((c) => c.text)
    .join("\n");

// isErrorFalse: the spec lets a successful result leave isError out.
const isErrorFalse = (res) => res.isError === undefined || res.isError === false;

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

const client = new Client({ name: "sandboxd-mcp-interop", version: "1.0.0" });

const callTool = (args, timeout = CALL_TIMEOUT) => client.callTool({ name: "run_code", arguments: args }, undefined, { timeout });

async function main() {
  const connected = await check(`initialize over ${mode}`, async () => {
    await client.connect(transport, { timeout: CALL_TIMEOUT });
    const p = [];
    const info = client.getServerVersion();
    if (info?.name !== "sandboxd") p.push(`serverInfo.name = ${show(info?.name)}, want "sandboxd"`);
    if (!client.getServerCapabilities()?.tools) p.push(`the server declares no tools capability: ${show(client.getServerCapabilities())}`);
    if (!client.getInstructions()) p.push("the server gives no instructions");
    return p;
  });
  if (!connected) return;

  await check("tools/list: run_code and list_runtimes, with their schemas", async () => {
    const { tools } = await client.listTools(undefined, { timeout: CALL_TIMEOUT });
    const p = [];
    const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
    for (const name of ["run_code", "list_runtimes"]) {
      if (!byName[name]) p.push(`no ${name} tool in ${show(tools.map((t) => t.name))}`);
      else if (!byName[name].description) p.push(`${name} has no description`);
    }
    const rc = byName.run_code;
    if (rc) {
      const s = rc.inputSchema ?? {};
      if (s.type !== "object") p.push(`run_code inputSchema.type = ${show(s.type)}, want "object"`);
      for (const f of ["language", "code"]) {
        if (!(s.required ?? []).includes(f)) p.push(`run_code inputSchema.required = ${show(s.required)} lacks ${f}`);
        if (!s.properties?.[f]) p.push(`run_code inputSchema.properties lacks ${f}`);
      }
      for (const f of ["stdin", "args", "files", "timeout", "memory"]) {
        if (!s.properties?.[f]) p.push(`run_code inputSchema.properties lacks ${f}`);
        if ((s.required ?? []).includes(f)) p.push(`run_code inputSchema requires the optional ${f}`);
      }
      if (!rc.outputSchema?.properties?.status) p.push(`run_code has no outputSchema with status: ${show(rc.outputSchema)}`);
    }
    return p;
  });

  await check('run_code: Python hello world is ok, stdout exact', async () => {
    const res = await callTool({ language: "python", code: 'print("hello from mcp")\n' });
    const p = [];
    const sc = res.structuredContent ?? {};
    if (!isErrorFalse(res)) p.push(`isError = ${show(res.isError)}, want false`);
    if (!text(res).includes("hello from mcp")) p.push(`the text does not contain the output: ${show(text(res))}`);
    if (sc.status !== "ok") p.push(`structuredContent.status = ${show(sc.status)}, want "ok"`);
    if (sc.stdout !== "hello from mcp\n") p.push(`structuredContent.stdout = ${show(sc.stdout)}, want "hello from mcp\\n"`);
    if (sc.stderr !== "") p.push(`structuredContent.stderr = ${show(sc.stderr)}, want ""`);
    if (sc.exit_code !== 0) p.push(`structuredContent.exit_code = ${show(sc.exit_code)}, want 0`);
    if (sc.language !== "python") p.push(`structuredContent.language = ${show(sc.language)}, want "python"`);
    if (p.length) p.push(`result: ${show(res)}`);
    return p;
  });

  await check("run_code: stdin, args and files reach the program; a written file comes back", async () => {
    const code = [
      "import sys",
      "data = open('data.txt').read()",
      "line = sys.stdin.readline().strip()",
      "print(sys.argv[1:], line, data)",
      "open('out.txt', 'w').write('written')",
      "",
    ].join("\n");
    const res = await callTool({
      language: "py",
      code,
      stdin: "from stdin\n",
      args: ["a", "b c"],
      files: [{ name: "data.txt", content: "from a file" }],
    });
    const p = [];
    const sc = res.structuredContent ?? {};
    const want = "['a', 'b c'] from stdin from a file\n";
    if (!isErrorFalse(res)) p.push(`isError = ${show(res.isError)}, want false`);
    if (sc.stdout !== want) p.push(`structuredContent.stdout = ${show(sc.stdout)}, want ${show(want)}`);
    const out = (sc.files ?? []).find((f) => f.name === "out.txt");
    if (!out || out.content !== "written") p.push(`structuredContent.files has no out.txt with "written": ${show(sc.files)}`);
    if (!text(res).includes("out.txt")) p.push(`the text does not name the written file: ${show(text(res))}`);
    if (p.length) p.push(`result: ${show(res)}`);
    return p;
  });

  await check('run_code: an infinite loop with timeout "1s" stops with status timeout', async () => {
    const start = Date.now();
    const res = await callTool({ language: "python", code: "while True:\n    pass\n", timeout: "1s" });
    const took = Date.now() - start;
    const p = [];
    const sc = res.structuredContent ?? {};
    if (res.isError !== true) p.push(`isError = ${show(res.isError)}, want true`);
    if (sc.status !== "timeout") p.push(`structuredContent.status = ${show(sc.status)}, want "timeout"`);
    if (!/\b1s\b/.test(text(res))) p.push(`the text does not name the 1s limit: ${show(text(res))}`);
    if (!sc.reason) p.push("structuredContent.reason is empty");
    if (took > 15_000) p.push(`the call took ${took}ms for a 1s limit`);
    if (p.length) p.push(`result: ${show(res)}`);
    return { problems: p, note: `${took}ms: ${show(text(res).split("\n")[0])}` };
  });

  await check("run_code: an unknown language is a tool error listing the languages", async () => {
    const res = await callTool({ language: "cobol-85", code: "DISPLAY 'HI'." });
    const p = [];
    const t = text(res);
    if (res.isError !== true) p.push(`isError = ${show(res.isError)}, want true`);
    if (!t.includes("cobol-85")) p.push(`the text does not name the language asked for: ${show(t)}`);
    if (!t.includes("python")) p.push(`the text does not list the available languages: ${show(t)}`);
    if (p.length) p.push(`result: ${show(res)}`);
    return { problems: p, note: show(t) };
  });

  await check("run_code: arguments of the wrong types are refused", async () => {
    let res;
    try {
      res = await callTool({ language: 42, code: ["print(1)"], timeout: { seconds: 1 }, args: "x" });
    } catch (e) {
      // The client sends the arguments unchecked; a JSON-RPC error (the
      // server refusing the request itself) is accepted too, but said.
      if (e instanceof McpError) {
        return { problems: [], note: `JSON-RPC error ${e.code}: ${e.message}` };
      }
      throw e;
    }
    const p = [];
    if (res.isError !== true) p.push(`isError = ${show(res.isError)}, want true`);
    if (!text(res)) p.push("the error result has no text");
    if (p.length) p.push(`result: ${show(res)}`);
    return { problems: p, note: `tool result with isError, the server validated: ${show(text(res))}` };
  });

  await check("run_code: a 2 MiB code string is a tool error", async () => {
    const code = "# " + "x".repeat(2 * 1024 * 1024) + "\nprint('should not run')\n";
    let res;
    try {
      res = await callTool({ language: "python", code }, BIG_CALL_TIMEOUT);
    } catch (e) {
      return [`want a tool result with isError, got a failed request: ${e && e.stack ? e.stack : e}`];
    }
    const p = [];
    const t = text(res);
    if (res.isError !== true) p.push(`isError = ${show(res.isError)}, want true`);
    if (!/limit/i.test(t)) p.push(`the text does not say a limit was passed: ${show(t)}`);
    if (t.includes("should not run")) p.push("the program ran");
    if (p.length) p.push(`result: ${show(res)}`);
    return { problems: p, note: show(t) };
  });

  await check("run_code: after the bad calls, a normal call still works", async () => {
    const res = await callTool({ language: "python", code: "print(6 * 7)\n" });
    const p = [];
    const sc = res.structuredContent ?? {};
    if (!isErrorFalse(res)) p.push(`isError = ${show(res.isError)}, want false`);
    if (sc.status !== "ok") p.push(`structuredContent.status = ${show(sc.status)}, want "ok"`);
    if (sc.stdout !== "42\n") p.push(`structuredContent.stdout = ${show(sc.stdout)}, want "42\\n"`);
    if (p.length) p.push(`result: ${show(res)}`);
    return p;
  });

  await check("list_runtimes: python is listed", async () => {
    const res = await client.callTool({ name: "list_runtimes", arguments: {} }, undefined, { timeout: CALL_TIMEOUT });
    const p = [];
    if (!isErrorFalse(res)) p.push(`isError = ${show(res.isError)}, want false`);
    const rts = res.structuredContent?.runtimes;
    if (!Array.isArray(rts)) {
      p.push(`structuredContent.runtimes is not a list: ${show(res.structuredContent)}`);
    } else {
      const py = rts.find((r) => r.language === "python");
      if (!py) p.push(`no python in ${show(rts.map((r) => r.language))}`);
      else if (!py.version) p.push(`python has no version: ${show(py)}`);
    }
    if (!/^python /m.test(text(res))) p.push(`the text does not list python: ${show(text(res))}`);
    if (p.length) p.push(`result: ${show(res)}`);
    return { problems: p, note: Array.isArray(rts) ? rts.map((r) => `${r.language} ${r.version}`).join(", ") : "" };
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
