// kernel.mjs drives sandboxd's Jupyter kernel gateway API with the real
// npm client, @jupyterlab/services, unchanged, as JupyterLab does:
//
//	node tests/jupyter/kernel.mjs http://127.0.0.1:PORT TOKEN OTHER_TOKEN [GATEWAY GATEWAY_TOKEN]
//
// BASE is sandboxd, or a Jupyter server in front of it (--gateway-url); then
// GATEWAY and GATEWAY_TOKEN are sandboxd's, where the shutdown is checked.
//
// It starts a kernel through the REST API, talks to it over the channels
// WebSocket (the client offers the binary v1 subprotocol first) and checks
// what a notebook relies on: message order and parent ids, execution counts
// 1 then 2, a traceback, an interrupt that stops time.sleep(60) within 5 s,
// a restart that clears the kernel's state, a shutdown after which the
// kernel is not found; and that OTHER_TOKEN sees none of TOKEN's kernels
// ("-": no such check, for a notebook server in front, which has one user).
//
// It prints one line per check ("ok - ..." or "not ok - ...", TAP style) and
// exits 1 if any check failed, 2 on a usage error. tests/jupyter_test.go runs
// it; `npm ci --prefix tests/jupyter` installs the client.

import { KernelAPI, KernelManager, KernelSpecAPI, ServerConnection } from "@jupyterlab/services";

const [base, token, otherToken, gateway = base, gatewayToken = token] = process.argv.slice(2);
if (!base || !token || !otherToken) {
  console.error("usage: node kernel.mjs BASE_URL TOKEN OTHER_TOKEN [GATEWAY_URL GATEWAY_TOKEN]");
  process.exit(2);
}

// Client-side bound on each step (ms): a hung server fails a check instead
// of hanging the test.
const STEP_TIMEOUT = 60_000;

const settings = (tok) =>
  ServerConnection.makeSettings({ baseUrl: base, wsUrl: base.replace(/^http/, "ws"), token: tok, appendToken: true });
const mine = settings(token);
const theirs = settings(otherToken);

let failures = 0;

// check runs one named check; fn returns a list of problems (empty: ok)
// or {problems, note}.
async function check(name, fn) {
  let problems, note;
  try {
    const r = await within(fn(), STEP_TIMEOUT, name);
    ({ problems, note } = Array.isArray(r) ? { problems: r } : r);
  } catch (e) {
    problems = [`threw: ${e && e.stack ? e.stack : e}`];
  }
  if (problems.length === 0) {
    console.log(`ok - ${name}${note ? ` (${note})` : ""}`);
    return true;
  }
  failures++;
  console.log(`not ok - ${name}`);
  for (const p of problems) console.log(`    ${String(p).replaceAll("\n", "\n    ")}`);
  return false;
}

function within(p, ms, what) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

// execute runs code and returns the reply and the iopub messages whose
// parent is the request, in order. done resolves once the client has both
// the reply and the idle status.
async function execute(kernel, code, onInput) {
  const future = kernel.requestExecute({ code });
  const iopub = [];
  future.onIOPub = (msg) => {
    iopub.push(msg);
    if (msg.header.msg_type === "execute_input" && onInput) onInput();
  };
  const reply = await future.done;
  return { id: future.msg.header.msg_id, reply, iopub };
}

// story is the iopub messages' types, a stream's chunks counting as one.
function story(iopub) {
  const out = [];
  for (const m of iopub) {
    const t = m.header.msg_type === "status" ? `status:${m.content.execution_state}` : m.header.msg_type;
    if (t === "stream" && out[out.length - 1] === t) continue;
    out.push(t);
  }
  return out.join(" ");
}

function parentsAre(run) {
  const bad = run.iopub.filter((m) => m.parent_header.msg_id !== run.id);
  if (run.reply.parent_header.msg_id !== run.id) bad.push(run.reply);
  return bad.map((m) => `${m.channel}:${m.header.msg_type} has parent ${m.parent_header.msg_id}, not ${run.id}`);
}

// connected waits until the kernel's WebSocket is connected (the client
// has had its kernel_info_reply) and returns how often it reconnected.
// Only with a Jupyter server in front does it reconnect, every 5 s: that
// server's gateway client (jupyter_server 1.23, GatewayWebSocketClient)
// can lose the first message of a socket whose upstream connection its
// spawned _connect has not begun yet (on_message then waits on a future
// nothing resolves), and that message is the kernel_info_request; a
// notebook's user then reconnects the kernel, and so does this client.
// Straight to sandboxd, a lost message fails the check.
async function connected(kernel) {
  let reconnects = 0;
  for (let i = 0; kernel.connectionStatus !== "connected"; i++) {
    if (i > 600) throw new Error(`the kernel's WebSocket is ${kernel.connectionStatus} after 30 s (${reconnects} reconnects)`);
    if (gateway !== base && i > 0 && i % 100 === 0) {
      reconnects++;
      kernel.reconnect().catch(() => {});
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return reconnects;
}

const manager = new KernelManager({ serverSettings: mine });
let kernel;

await check("kernelspecs list python3 as the default", async () => {
  const specs = await KernelSpecAPI.getSpecs(mine);
  const py = specs.kernelspecs.python3;
  const p = [];
  if (specs.default !== "python3") p.push(`default is ${specs.default}`);
  if (!py || py.language !== "python" || !py.display_name) p.push(`python3 spec: ${JSON.stringify(py)}`);
  return p;
});

const started = await check("start a kernel and connect to its channels", async () => {
  kernel = await manager.startNew({ name: "python3" });
  const reconnects = await connected(kernel);
  const info = await kernel.info;
  const p = [];
  if (!/^[0-9a-f-]{36}$/.test(kernel.id)) p.push(`kernel id ${kernel.id} is not a UUID`);
  if (info.language_info.name !== "python") p.push(`language_info: ${JSON.stringify(info.language_info)}`);
  if (info.protocol_version !== "5.3") p.push(`protocol_version ${info.protocol_version}`);
  const again = reconnects ? `, ${reconnects} reconnect(s) through the server in front` : "";
  return { problems: p, note: `wire protocol "${kernel._selectedProtocol ?? "?"}", python ${info.language_info.version}${again}` };
});
if (!started) {
  console.log("not ok - no kernel: the other checks need one");
  process.exit(1);
}

await check("a cell's messages come in order, with its parent id, count 1", async () => {
  const run = await execute(kernel, "print('hello from the sandbox')\nx = 41");
  const p = parentsAre(run);
  const want = "status:busy execute_input stream status:idle";
  if (story(run.iopub) !== want) p.push(`iopub: ${story(run.iopub)}, want ${want}`);
  const text = run.iopub.filter((m) => m.header.msg_type === "stream").map((m) => m.content.text).join("");
  if (text !== "hello from the sandbox\n") p.push(`stdout ${JSON.stringify(text)}`);
  if (run.reply.content.status !== "ok" || run.reply.content.execution_count !== 1) p.push(`reply: ${JSON.stringify(run.reply.content)}`);
  const input = run.iopub.find((m) => m.header.msg_type === "execute_input");
  if (input?.content.execution_count !== 1) p.push(`execute_input count ${input?.content.execution_count}`);
  return p;
});

await check("the next cell is count 2 and has a result", async () => {
  const run = await execute(kernel, "x + 1");
  const p = parentsAre(run);
  const result = run.iopub.find((m) => m.header.msg_type === "execute_result");
  if (result?.content.data["text/plain"] !== "42" || result?.content.execution_count !== 2) p.push(`execute_result: ${JSON.stringify(result?.content)}`);
  if (run.reply.content.execution_count !== 2) p.push(`reply count ${run.reply.content.execution_count}`);
  if (story(run.iopub) !== "status:busy execute_input execute_result status:idle") p.push(`iopub: ${story(run.iopub)}`);
  return p;
});

await check("an exception comes as an error with its traceback as lines", async () => {
  const run = await execute(kernel, "def f():\n    return 1 / 0\nf()");
  const p = parentsAre(run);
  const err = run.iopub.find((m) => m.header.msg_type === "error");
  const tb = err?.content.traceback ?? [];
  if (err?.content.ename !== "ZeroDivisionError") p.push(`error: ${JSON.stringify(err?.content)}`);
  if (!Array.isArray(tb) || tb.length < 3 || tb.some((l) => l.includes("\n")) || !tb.some((l) => l.includes("return 1 / 0"))) {
    p.push(`traceback: ${JSON.stringify(tb)}`);
  }
  if (run.reply.content.status !== "error" || run.reply.content.ename !== "ZeroDivisionError") p.push(`reply: ${JSON.stringify(run.reply.content)}`);
  return p;
});

await check("an interrupt stops time.sleep(60) within 5 s", async () => {
  let t0;
  const running = execute(kernel, "import time\ntime.sleep(60)", () => {
    t0 = Date.now();
    kernel.interrupt();
  });
  const run = await running;
  const took = Date.now() - t0;
  const p = parentsAre(run);
  const err = run.iopub.find((m) => m.header.msg_type === "error");
  if (err?.content.ename !== "KeyboardInterrupt") p.push(`error: ${JSON.stringify(err?.content)}`);
  if (took > 5000) p.push(`took ${took} ms`);
  const after = await execute(kernel, "x");
  const r = after.iopub.find((m) => m.header.msg_type === "execute_result");
  if (r?.content.data["text/plain"] !== "41") p.push(`the kernel lost its state: ${JSON.stringify(after.reply.content)}`);
  return { problems: p, note: `${took} ms` };
});

await check("a restart clears the kernel's state and counts from 1", async () => {
  const id = kernel.id;
  await kernel.restart();
  await connected(kernel);
  const run = await execute(kernel, "x");
  const p = parentsAre(run);
  const err = run.iopub.find((m) => m.header.msg_type === "error");
  if (kernel.id !== id) p.push(`the id changed: ${id} -> ${kernel.id}`);
  if (err?.content.ename !== "NameError") p.push(`x after the restart: ${JSON.stringify(run.reply.content)}`);
  if (run.reply.content.execution_count !== 1) p.push(`count ${run.reply.content.execution_count}, want 1`);
  return p;
});

if (otherToken !== "-") await check("another token sees none of this token's kernels", async () => {
  const p = [];
  const own = await KernelAPI.listRunning(mine);
  const other = await KernelAPI.listRunning(theirs);
  if (!own.some((k) => k.id === kernel.id)) p.push(`own list: ${JSON.stringify(own)}`);
  if (other.some((k) => k.id === kernel.id)) p.push(`the other token lists it: ${JSON.stringify(other)}`);
  if ((await KernelAPI.getKernelModel(kernel.id, theirs)) !== undefined) p.push("the other token gets its model");
  // The client takes a 404 on shutdown as "already gone"; the kernel
  // must still be there for its owner.
  await KernelAPI.shutdownKernel(kernel.id, theirs).catch(() => {});
  if ((await KernelAPI.getKernelModel(kernel.id, mine)) === undefined) p.push("the other token shut it down");
  const run = await execute(kernel, "1 + 1");
  if (run.reply.content.status !== "ok") p.push(`the kernel after the other token's attempts: ${JSON.stringify(run.reply.content)}`);
  return p;
});

await check("a shutdown ends the kernel; then it is not found (404)", async () => {
  const id = kernel.id;
  await kernel.shutdown();
  const p = [];
  if (kernel.status !== "dead") p.push(`status ${kernel.status}`);
  // Notebook 6 in front answers a missing kernel with 200 and null,
  // which the client cannot validate; sandboxd itself says 404.
  if (await KernelAPI.getKernelModel(id, mine).catch(() => undefined)) p.push("getKernelModel still finds it");
  const r = await fetch(`${gateway}/api/kernels/${id}`, { headers: { Authorization: `token ${gatewayToken}` } });
  if (r.status !== 404) p.push(`GET ${gateway}/api/kernels/${id}: ${r.status}`);
  return p;
});

manager.dispose();
console.log(failures === 0 ? "# all checks passed" : `# ${failures} check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
