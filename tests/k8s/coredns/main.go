// Command coredns is CoreDNS with only the plugins the test cluster's DNS
// needs: the cluster's names from the API server (kubernetes), the node's
// address to listen on (bind), errors, a cache, and NXDOMAIN for every
// other name (template), as an upstream resolver would answer for a name
// that does not exist. Nothing is forwarded: the cluster has no way out.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/template"
)

func main() { coremain.Run() }
