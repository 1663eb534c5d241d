// The SDK half of bench/e2b: n times, Sandbox.create, runCode('1+1'),
// kill, through the real @e2b/code-interpreter (resolved from
// E2B_SDK_DIR, tests/e2b with its node_modules). Prints the milliseconds
// of each as a JSON array. E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY
// point it at the daemon.
import { createRequire } from 'node:module'

const require = createRequire(process.env.E2B_SDK_DIR + '/')
const { Sandbox } = require('@e2b/code-interpreter')
const n = Number(process.argv[2] || 50)
const times = []
for (let i = 0; i < n; i++) {
  const t0 = performance.now()
  const sbx = await Sandbox.create()
  const ex = await sbx.runCode('1+1')
  if (ex.text !== '2') throw new Error(`runCode('1+1') answered ${JSON.stringify(ex)}`)
  if (!(await sbx.kill())) throw new Error('kill answered false')
  times.push(performance.now() - t0)
}
console.log(JSON.stringify(times))
