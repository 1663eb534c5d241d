// Drives sandboxd's E2B API with the real @e2b/code-interpreter SDK,
// unchanged: the environment (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY)
// points it at the daemon, as a user switching to sandboxd would.
// tests/e2b_test.go runs it as: node interop.mjs OTHER_KEY
// Each check prints "ok <name>"; the first failure throws (exit 1).
import assert from 'node:assert/strict'
import zlib from 'node:zlib'
import {
  Sandbox,
  AuthenticationError,
  CommandExitError,
  FileNotFoundError,
  NotFoundError,
} from '@e2b/code-interpreter'

const otherKey = process.argv[2]
assert.ok(otherKey, 'usage: node interop.mjs OTHER_KEY')
// The host-name routing test reaches <port>-<id>.<E2B_DOMAIN> through an
// HTTP proxy of its own (DNS and TLS for a made-up domain); E2B's SDK
// takes a proxy as a connection option.
const conn = process.env.INTEROP_PROXY ? { proxy: process.env.INTEROP_PROXY } : {}

function ok(name) {
  console.log(`ok ${name}`)
}

// pngSize checks a PNG the way a decoder does: its signature, its IHDR,
// and its image data inflating to the rows its size says; it returns the
// width and height.
function pngSize(b64) {
  const buf = Buffer.from(b64, 'base64')
  assert.deepEqual([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature')
  let off = 8
  let width = 0, height = 0, bpp = 0
  const idat = []
  while (off < buf.length) {
    const len = buf.readUInt32BE(off)
    const type = buf.toString('latin1', off + 4, off + 8)
    const data = buf.subarray(off + 8, off + 8 + len)
    if (type === 'IHDR') {
      width = data.readUInt32BE(0)
      height = data.readUInt32BE(4)
      const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[data[9]]
      bpp = (channels * data[8]) / 8
    } else if (type === 'IDAT') {
      idat.push(data)
    }
    off += 12 + len
  }
  const raw = zlib.inflateSync(Buffer.concat(idat))
  assert.equal(raw.length, height * (1 + Math.ceil(width * bpp)), 'inflated PNG rows')
  return [width, height]
}

const sbx = await Sandbox.create(conn)
assert.match(sbx.sandboxId, /\S+/)
ok('create')

// stdout arrives through onStdout while the cell runs: the first line
// comes well before the cell ends.
const seen = []
const t0 = Date.now()
const printed = await sbx.runCode('import time\nprint("first", flush=True)\ntime.sleep(2)\nprint("second")', {
  onStdout: (m) => seen.push([m.line, Date.now() - t0]),
})
const took = Date.now() - t0
assert.deepEqual(printed.logs.stdout, ['first\n', 'second\n'])
assert.equal(seen[0][0], 'first\n')
assert.ok(took - seen[0][1] >= 1000, `the first line came ${seen[0][1]} ms in, the cell ended at ${took} ms`)
ok('runCode streams stdout live')

const expr = await sbx.runCode('x = 6\nx * 7')
assert.equal(expr.text, '42')
assert.equal(expr.results.length, 1)
assert.equal(expr.results[0].isMainResult, true)
ok('trailing expression text')

const plot = await sbx.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()')
assert.equal(plot.error, undefined)
const figs = plot.results.filter((r) => r.png)
assert.equal(figs.length, 1)
assert.equal(figs[0].isMainResult, false)
const [w, h] = pngSize(figs[0].png)
assert.ok(w > 100 && h > 100, `figure ${w}x${h}`)
ok(`matplotlib figure as a PNG (${w}x${h})`)

const df = await sbx.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2], "b": [3, 4]})')
assert.match(df.results[0].html, /<table/)
assert.match(df.text, /a\s+b/)
ok('DataFrame as HTML')

const err = await sbx.runCode('def f():\n    return 1 / 0\nf()')
assert.equal(err.error.name, 'ZeroDivisionError')
assert.equal(err.error.value, 'division by zero')
assert.match(err.error.traceback, /line 2, in f/)
ok('exception name, value and traceback')

assert.equal((await sbx.runCode('x + 1')).text, '7')
const withEnvs = await sbx.runCode('import os, subprocess\n(os.environ["GREETING"], subprocess.run(["sh", "-c", "echo $GREETING"], capture_output=True, text=True).stdout)', { envs: { GREETING: 'hello' } })
assert.equal(withEnvs.text, "('hello', 'hello\\n')")
assert.equal((await sbx.runCode('os.environ.get("GREETING")')).text, undefined, 'envs hold for one execution')
ok('state kept between calls; envs for one execution')

const jsCtx = await sbx.createCodeContext({ language: 'javascript' })
assert.equal(jsCtx.language, 'javascript')
await sbx.runCode('const greet = (n) => `hello ${n}`', { context: jsCtx })
const js = await sbx.runCode('greet("e2b")', { context: jsCtx })
assert.equal(js.text, "'hello e2b'")
assert.equal((await sbx.runCode('process.env.WHO', { context: jsCtx, envs: { WHO: 'js' } })).text, "'js'")
assert.equal((await sbx.runCode('process.env.WHO', { context: jsCtx })).text, undefined)
assert.equal((await sbx.runCode('typeof greet', { language: 'javascript' })).text, "'undefined'",
  'the default JavaScript context is another context')
const contexts = await sbx.listCodeContexts()
assert.ok(contexts.some((c) => c.id === jsCtx.id))
await sbx.restartCodeContext(jsCtx)
assert.equal((await sbx.runCode('typeof greet', { context: jsCtx })).text, "'undefined'", 'a restart clears the context')
await sbx.removeCodeContext(jsCtx)
assert.ok(!(await sbx.listCodeContexts()).some((c) => c.id === jsCtx.id))
await assert.rejects(sbx.runCode('1', { context: jsCtx }), (e) => e instanceof NotFoundError)
ok('JavaScript context: create, run, restart, remove')

await sbx.files.write('/home/user/data/input.txt', 'written by files.write')
assert.equal((await sbx.runCode('open("data/input.txt").read()')).text, "'written by files.write'")
ok('files.write, then the code reads it')

await sbx.runCode('with open("result.csv", "w") as f:\n    f.write("a,b\\n1,2\\n")')
assert.equal(await sbx.files.read('/home/user/result.csv'), 'a,b\n1,2\n')
assert.equal(await sbx.files.read('result.csv'), 'a,b\n1,2\n')
ok('the code writes a file, files.read returns it')

await assert.rejects(sbx.files.read('/home/user/missing.txt'), (e) => e instanceof FileNotFoundError && e instanceof NotFoundError)
ok('a missing file is FileNotFoundError')

const entries = await sbx.files.list('/home/user')
const names = entries.map((e) => `${e.type}:${e.name}`).sort()
assert.deepEqual(names, ['dir:data', 'file:result.csv'])
assert.equal(entries.find((e) => e.name === 'result.csv').path, '/home/user/result.csv')
assert.equal(await sbx.files.makeDir('/home/user/made/deep'), true)
assert.equal(await sbx.files.makeDir('/home/user/made/deep'), false)
assert.equal(await sbx.files.exists('/home/user/made/deep'), true)
await sbx.files.remove('/home/user/made')
assert.equal(await sbx.files.exists('/home/user/made'), false)
ok('files.list, makeDir, exists, remove')

const ls = await sbx.commands.run('ls -la /home/user')
assert.equal(ls.exitCode, 0)
assert.match(ls.stdout, /result\.csv/)
assert.match(ls.stdout, /data/)
await assert.rejects(sbx.commands.run('echo oops >&2; exit 3'), (e) => e instanceof CommandExitError && e.exitCode === 3 && e.stderr === 'oops\n')
const lines = []
await sbx.commands.run('echo one; sleep 1; echo two', { onStdout: (d) => lines.push(d) })
assert.deepEqual(lines.join(''), 'one\ntwo\n')
ok('commands.run: output and exit codes')

const t1 = Date.now()
await assert.rejects(sbx.commands.run('sleep 30', { timeoutMs: 1500 }))
assert.ok(Date.now() - t1 < 15000, 'the command timeout cut the command')
const bg = await sbx.commands.run('sleep 30', { background: true })
const t2 = Date.now()
assert.equal(await bg.kill(), true)
await assert.rejects(bg.wait())
assert.ok(Date.now() - t2 < 15000, 'kill() stopped the command')
assert.equal((await sbx.commands.run('echo after')).stdout, 'after\n')
ok('commands.run timeout; kill() of a background command')

assert.equal(await sbx.isRunning(), true)
await sbx.setTimeout(120_000)
const info = await sbx.getInfo()
assert.equal(info.sandboxId, sbx.sandboxId)
assert.ok(info.endAt.getTime() - Date.now() > 100_000, `endAt ${info.endAt} after setTimeout(120 s)`)
const again = await Sandbox.connect(sbx.sandboxId, conn)
assert.equal((await again.runCode('x')).text, '6', 'a connected handle reaches the same kernel')
ok('isRunning, setTimeout, getInfo, connect')

// Another key sees none of this sandbox.
const listedOther = await Sandbox.list({ ...conn, apiKey: otherKey }).nextItems()
assert.ok(!listedOther.some((s) => s.sandboxId === sbx.sandboxId), 'another key lists the sandbox')
assert.equal(await Sandbox.kill(sbx.sandboxId, { ...conn, apiKey: otherKey }), false)
await assert.rejects(Sandbox.connect(sbx.sandboxId, { ...conn, apiKey: otherKey }))
assert.equal(await sbx.isRunning(), true)
const listedMine = await Sandbox.list(conn).nextItems()
assert.ok(listedMine.some((s) => s.sandboxId === sbx.sandboxId))
ok("another key cannot see, connect to or kill the sandbox")

await assert.rejects(Sandbox.create({ ...conn, apiKey: 'not-a-token' }), (e) => e instanceof AuthenticationError)
ok('a bad API key is rejected')

assert.equal(await sbx.kill(), true)
assert.equal(await sbx.kill(), false)
assert.equal(await sbx.isRunning(), false)
ok('kill true, then false; isRunning false')
