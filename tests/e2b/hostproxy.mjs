// Preloaded (node --import) by the host-name routing test only: sends
// node's global fetch, which @e2b/code-interpreter's runCode and contexts
// use, through the test's CONNECT proxy (INTEROP_PROXY), as the SDK's
// proxy option does for its own calls. In production wildcard DNS and TLS
// do this; the test has neither for its made-up domain.
import { ProxyAgent, setGlobalDispatcher } from 'undici'

setGlobalDispatcher(new ProxyAgent({ uri: process.env.INTEROP_PROXY, proxyTunnel: true }))
