// Command pause is the test cluster's pod sandbox image (containerd's
// sandbox_image): it holds a pod's namespaces, reaps the orphans a pod's
// containers leave to it, and exits on SIGTERM or SIGINT. The cluster of
// tests/k8s loads it under registry.k8s.io/pause's name, since nothing is
// pulled there.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
