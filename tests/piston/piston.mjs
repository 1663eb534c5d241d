// piston.mjs drives sandboxd's Piston v2 endpoints with the real
// piston-client npm package, unchanged, exactly as a Piston user would:
//
//	node tests/piston/piston.mjs http://127.0.0.1:PORT
//
// It prints one line per check ("ok   ..." or "FAIL ...") and exits 1 if any
// check failed, 2 on a usage error. tests/piston_test.go runs it against a
// real daemon; `npm ci --prefix tests/piston` installs the client.

import { piston } from "piston-client";

const server = process.argv[2];
if (!server) {
  console.error("usage: node piston.mjs DAEMON_URL");
  process.exit(2);
}

const client = piston({ server });
let failures = 0;

// check runs one named check; fn returns a list of problems (empty: ok).
async function check(name, fn) {
  let problems;
  try {
    problems = await fn();
  } catch (e) {
    problems = [`threw: ${e && e.stack ? e.stack : e}`];
  }
  if (problems.length === 0) {
    console.log(`ok   ${name}`);
    return;
  }
  failures++;
  console.log(`FAIL ${name}`);
  for (const p of problems) {
    console.log(`       ${p}`);
  }
}

const show = (v) => JSON.stringify(v);

// want compares got[key] with want for each key of want.
function want(got, wanted, where) {
  const problems = [];
  if (got === null || typeof got !== "object") {
    return [`${where}: got ${show(got)}, want an object`];
  }
  for (const [k, v] of Object.entries(wanted)) {
    if (got[k] !== v) {
      problems.push(`${where}.${k} = ${show(got[k])}, want ${show(v)}`);
    }
  }
  return problems;
}

// isInterleaving reports whether c is a merge of a and b, each in order.
function isInterleaving(c, a, b) {
  if (typeof c !== "string" || c.length !== a.length + b.length) return false;
  // ok[j]: c[0, i+j) is a merge of a[0, i) and b[0, j), for the current i.
  let ok = new Array(b.length + 1).fill(false);
  for (let i = 0; i <= a.length; i++) {
    for (let j = 0; j <= b.length; j++) {
      if (i === 0 && j === 0) {
        ok[0] = true;
        continue;
      }
      const fromA = i > 0 && ok[j] && a[i - 1] === c[i + j - 1];
      const fromB = j > 0 && ok[j - 1] && b[j - 1] === c[i + j - 1];
      ok[j] = fromA || fromB;
    }
  }
  return ok[b.length];
}

// runOf returns the run stage of an execute answer, or the problems.
function runOf(res) {
  if (!res || typeof res !== "object" || !res.run) {
    return [null, [`no run stage in the answer: ${show(res)}`]];
  }
  return [res.run, []];
}

await check("runtimes() lists python with a version", async () => {
  const rts = await client.runtimes();
  if (!Array.isArray(rts)) {
    return [`runtimes() = ${show(rts)}, want an array`];
  }
  const py = rts.find((r) => r.language === "python");
  if (!py) {
    return [`no python in ${show(rts.map((r) => r.language))}`];
  }
  const problems = [];
  if (typeof py.version !== "string" || !/^\d+\.\d+/.test(py.version)) {
    problems.push(`python version = ${show(py.version)}, want like "3.11.2"`);
  }
  if (!Array.isArray(py.aliases)) {
    problems.push(`python aliases = ${show(py.aliases)}, want an array`);
  }
  if (!rts.find((r) => r.language === "c")) {
    problems.push(`no c in ${show(rts.map((r) => r.language))}`);
  }
  return problems;
});

await check("execute python print(\"hi\")", async () => {
  const res = await client.execute("python", 'print("hi")');
  const [run, problems] = runOf(res);
  if (!run) return problems;
  problems.push(...want(res, { language: "python" }, "answer"));
  problems.push(...want(run, { stdout: "hi\n", stderr: "", output: "hi\n", code: 0, signal: null }, "run"));
  if (typeof res.version !== "string" || res.version === "") {
    problems.push(`answer.version = ${show(res.version)}, want the runtime's version`);
  }
  if ("compile" in res && res.compile !== undefined) {
    problems.push(`answer.compile = ${show(res.compile)}, want none for python`);
  }
  return problems;
});

await check("execute with stdin and args", async () => {
  const code = "import sys\nprint(sys.argv[1:])\nprint(sys.stdin.read().upper(), end='')\n";
  const res = await client.execute("python", code, { stdin: "from stdin\n", args: ["a b", "--c"] });
  const [run, problems] = runOf(res);
  if (!run) return problems;
  problems.push(...want(run, { stdout: "['a b', '--c']\nFROM STDIN\n", code: 0 }, "run"));
  return problems;
});

await check("execute with piston-client's default args [1, 2, 3]", async () => {
  const res = await client.execute("python", "import sys\nprint(' '.join(sys.argv[1:]))\n");
  const [run, problems] = runOf(res);
  if (!run) return problems;
  problems.push(...want(run, { stdout: "1 2 3\n", code: 0 }, "run"));
  return problems;
});

await check("a program that exits 2 gives run.code 2", async () => {
  const code = "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(2)\n";
  const res = await client.execute("python", code);
  const [run, problems] = runOf(res);
  if (!run) return problems;
  problems.push(...want(run, { stdout: "out\n", stderr: "err\n", code: 2, signal: null }, "run"));
  // Two pipes read apart keep each stream's order, not the order between
  // writes microseconds apart; output must be a merge of the two.
  if (!isInterleaving(run.output, run.stdout, run.stderr)) {
    problems.push(`run.output = ${show(run.output)}, want stdout and stderr interleaved`);
  }
  return problems;
});

await check("a timeout (runTimeout 500) gives run.signal SIGKILL", async () => {
  const start = Date.now();
  const res = await client.execute("python", "while True:\n    pass\n", { runTimeout: 500 });
  const took = Date.now() - start;
  const [run, problems] = runOf(res);
  if (!run) return problems;
  problems.push(...want(run, { signal: "SIGKILL", code: null }, "run"));
  if (took > 5000) {
    problems.push(`took ${took}ms for a 500ms run_timeout`);
  }
  return problems;
});

await check("a C program compiles and runs (language c)", async () => {
  const code = '#include <stdio.h>\nint main(int argc, char **argv) { printf("c says %d\\n", argc); return 0; }\n';
  const res = await client.execute("c", code, { args: ["x"] });
  const [run, problems] = runOf(res);
  if (!run) return problems;
  problems.push(...want(res, { language: "c" }, "answer"));
  problems.push(...want(run, { stdout: "c says 2\n", code: 0 }, "run"));
  if (!res.compile || typeof res.compile !== "object") {
    problems.push(`answer.compile = ${show(res.compile)}, want the compile stage`);
  } else {
    problems.push(...want(res.compile, { code: 0 }, "compile"));
  }
  return problems;
});

await check("a C compile error is reported in the compile stage", async () => {
  const res = await client.execute("c", "int main(void) { return nope; }\n");
  const problems = [];
  if (!res || !res.compile) {
    return [`no compile stage in ${show(res)}`];
  }
  if (res.compile.code === 0) {
    problems.push(`compile.code = 0 for a program that does not compile`);
  }
  if (!/nope/.test(res.compile.stderr)) {
    problems.push(`compile.stderr = ${show(res.compile.stderr)}, want the compiler's message naming "nope"`);
  }
  return problems;
});

await check("files with explicit names and a version pattern", async () => {
  const res = await client.execute({
    language: "python",
    version: "3.x",
    files: [
      { name: "main.py", content: "import helper\nprint(helper.X)\n" },
      { name: "helper.py", content: "X = 42\n" },
    ],
    args: [],
  });
  const [run, problems] = runOf(res);
  if (!run) return problems;
  problems.push(...want(run, { stdout: "42\n", code: 0 }, "run"));
  return problems;
});

await check("an unknown language returns {message}", async () => {
  const res = await client.execute("cobol", "DISPLAY 'HI'.");
  if (!res || typeof res.message !== "string" || res.message === "") {
    return [`answer = ${show(res)}, want {message: "..."}`];
  }
  if ("run" in res) {
    return [`answer has a run stage: ${show(res)}`];
  }
  return [];
});

await check("an unknown version returns {message}", async () => {
  const res = await client.execute("python", "print(1)", { version: "2.7.18" });
  if (!res || typeof res.message !== "string" || !/runtime is unknown/.test(res.message)) {
    return [`answer = ${show(res)}, want {message: "python-2.7.18 runtime is unknown"}`];
  }
  return [];
});

console.log(failures === 0 ? "PASS: every check" : `FAIL: ${failures} check(s)`);
process.exit(failures === 0 ? 0 : 1);
