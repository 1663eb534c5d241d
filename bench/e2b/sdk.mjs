// The SDK half of bench/e2b: for each line read on stdin, one sandbox
// life through the real @e2b/code-interpreter (resolved from E2B_SDK_DIR,
// tests/e2b with its node_modules): Sandbox.create, runCode('1+1'), kill.
// Prints its milliseconds, one line each. E2B_API_URL, E2B_SANDBOX_URL
// and E2B_API_KEY point it at the daemon.
import { createRequire } from 'node:module'
import readline from 'node:readline'

const require = createRequire(process.env.E2B_SDK_DIR + '/')
const { Sandbox } = require('@e2b/code-interpreter')

for await (const _ of readline.createInterface({ input: process.stdin })) {
  const t0 = performance.now()
  const sbx = await Sandbox.create()
  const ex = await sbx.runCode('1+1')
  if (ex.text !== '2') throw new Error(`runCode('1+1') answered ${JSON.stringify(ex)}`)
  if (!(await sbx.kill())) throw new Error('kill answered false')
  console.log((performance.now() - t0).toFixed(3))
}
