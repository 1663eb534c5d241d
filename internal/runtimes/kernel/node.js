// sandboxd's JavaScript kernel: one persistent node for a session. It
// speaks the protocol of PROTOCOL.md (one JSON object per line: requests
// on fd 3, answers on fd 4, the cells' own output on fd 1 and 2), as the
// Python kernel does.
//
// Cells run as scripts in this node's own global context, so `var`,
// `let`, `const`, functions and `require`d modules persist from cell to
// cell, as in a browser's console. A SIGINT while a cell's synchronous
// code runs interrupts it (vm's breakOnSigint); between cells it is
// ignored. A cell whose value is a promise is awaited, and so is a
// top-level `await` (see awaitable).
// The kernel's own bindings live in this function, not in the global
// lexical scope the cells share (a cell's `const fs` must not clash).
(function kernel() {
'use strict';
const fs = require('fs');
const readline = require('readline');
const util = require('util');
const vm = require('vm');

// What the cells may replace or break, taken before they run.
const stringify = JSON.stringify;
const parse = JSON.parse;
const writeSync = fs.writeSync;
const inspect = util.inspect;
const MAX_REPR = 64 << 10;

let count = 0;
let cellID = null;
let interruptAwait = null;

function send(msg) {
  let data = Buffer.from(stringify(msg) + '\n');
  while (data.length > 0) {
    data = data.subarray(writeSync(4, data));
  }
}

function text(value) {
  let s;
  try {
    s = typeof value === 'string' ? inspect(value) : inspect(value, { depth: 4, maxArrayLength: 100, breakLength: 100 });
  } catch (e) {
    s = '<inspect failed: ' + (e && e.name) + '>';
  }
  if (s.length > MAX_REPR) {
    s = s.slice(0, MAX_REPR) + '... [inspect of ' + s.length + ' characters cut]';
  }
  return s;
}

// bundle is a value's MIME bundle: a plain {"mime/type": data} object is
// taken as one (display({"image/png": base64})), anything else is shown
// by inspect.
function bundle(value) {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.length > 0 && keys.every((k) => /^[a-z]+\/[-+.\w]+$/.test(k) && typeof value[k] === 'string')) {
      return Object.assign({ 'text/plain': '<' + keys.join(', ') + '>' }, value);
    }
  }
  return { 'text/plain': text(value) };
}

// Displays are sent once the cell's code has returned: vm's
// breakOnSigint can end the code between two writes of a line larger than
// the pipe, leaving half a line for the next answer to run into.
let displays = [];
globalThis.display = function display(...objs) {
  for (const obj of objs) {
    displays.push(bundle(obj));
  }
};

function flushDisplays() {
  for (const data of displays) {
    send({ type: 'display', id: cellID, data });
  }
  displays = [];
}
globalThis.require = require;

// trim drops the kernel's own frames from a stack: those after the last
// frame of a cell (vm's and this file's).
function trim(stack) {
  const lines = String(stack).split('\n');
  let last = -1;
  lines.forEach((l, i) => { if (l.includes('<cell-')) last = i; });
  return last < 0 ? lines.join('\n') : lines.filter((l, i) => i <= last || !l.startsWith('    at ')).join('\n');
}

function error(e) {
  if (e instanceof Error || (e && typeof e === 'object' && 'stack' in e)) {
    return { name: String(e.name || 'Error'), value: String(e.message || ''), traceback: trim(e.stack || e) };
  }
  return { name: 'Uncaught', value: text(e), traceback: 'Uncaught ' + text(e) };
}

// processTopLevelAwait is node's REPL's rewrite of a top-level `await`
// (lib/internal/repl/await.js, on node's own acorn): the code goes into
// an async arrow function, its declarations become assignments to
// bindings declared at the script's top level (so later cells see them;
// a `const` becomes a `let`, as in the REPL), and its trailing
// expression becomes `return { value: (expr) }`. It is an internal
// module, reached with --expose-internals (kernelFor passes it; the
// cells can reach node's internals too, which changes nothing: the
// sandbox, not node, is the boundary). Without it a top-level `await`
// stays the SyntaxError it is in a script.
let processTopLevelAwait = null;
try {
  ({ processTopLevelAwait } = require('internal/repl/await'));
} catch (e) {
  processTopLevelAwait = null;
}

// awaitable is code that failed to compile as a script rewritten for its
// top-level `await`, or null when that is not why it failed. The newline
// ends a trailing line comment before the wrapper's closing brackets (the
// REPL's input always ends in one).
function awaitable(code) {
  if (processTopLevelAwait === null || !code.includes('await')) {
    return null;
  }
  try {
    return processTopLevelAwait(code + '\n');
  } catch (e) {
    return null;
  }
}

// settle awaits a cell's promise. It runs on the event loop, where
// breakOnSigint does not reach: an interrupt rejects the wait instead
// (code still running on the loop, a busy loop after an `await`, is not
// stopped by it: the kernel is then killed at the end of the grace).
function settle(promise) {
  return new Promise((resolve, reject) => {
    interruptAwait = () => reject(new Error('Interrupted while awaiting the cell\'s promise'));
    promise.then(resolve, reject);
  });
}

async function execute(code) {
  count++;
  const filename = '<cell-' + count + '>';
  let value;
  try {
    // A cell compiles as a script, as it always has; only one that does
    // not, and has a top-level `await`, runs rewritten. The rewrite keeps
    // the lines where they were (it adds to the first and the last).
    let script, wrapped = false;
    try {
      script = new vm.Script(code, { filename });
    } catch (e) {
      const rewritten = awaitable(code);
      if (rewritten === null) {
        throw e;
      }
      try {
        script = new vm.Script(rewritten, { filename });
      } catch (e2) {
        throw e;
      }
      wrapped = true;
    }
    value = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
    if (wrapped) {
      // { value } when the cell ends in an expression, else undefined.
      const out = await settle(value);
      value = out === undefined ? undefined : out.value;
    }
    if (value && typeof value.then === 'function') {
      value = await settle(value);
    }
  } catch (e) {
    return { status: 'error', error: error(e) };
  } finally {
    interruptAwait = null;
  }
  const answer = { status: 'ok' };
  if (value !== undefined) {
    answer.result = bundle(value);
  }
  return answer;
}

// Between cells a SIGINT does nothing; during a synchronous cell vm takes
// it; during an awaited promise it ends the wait.
process.on('SIGINT', () => {
  if (interruptAwait) {
    interruptAwait();
  }
});
// A rejection nobody handles belongs to a cell: show it, do not exit.
process.on('unhandledRejection', (e) => {
  process.stderr.write('Unhandled rejection: ' + (e && e.stack ? e.stack : text(e)) + '\n');
});
process.on('uncaughtException', (e) => {
  process.stderr.write('Uncaught exception: ' + (e && e.stack ? e.stack : text(e)) + '\n');
});

async function serve() {
  const lines = readline.createInterface({ input: fs.createReadStream(null, { fd: 3 }), crlfDelay: Infinity });
  send({ type: 'ready', language: 'javascript', version: process.versions.node });
  for await (const line of lines) {
    const req = parse(line);
    cellID = req.id;
    const answer = await execute(req.code);
    flushDisplays();
    answer.type = 'done';
    answer.id = req.id;
    send(answer);
  }
  process.exit(0);
}

serve();
})();
