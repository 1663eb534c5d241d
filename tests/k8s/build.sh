#!/bin/bash
# Build what the test cluster of tests/k8s needs, once, into a cache that
# later runs reuse ($SBXK8S_CACHE, /var/cache/sandboxd/k8s):
#
#   tests/k8s/build.sh            (as root, on Debian 12)
#
# 1. Debian's packages: etcd, containerd, runc, the CNI plugins, iptables,
#    and mmdebstrap, umoci and skopeo for the images.
# 2. Kubernetes v1.33.13 (kube-apiserver, kube-controller-manager,
#    kube-scheduler, kubelet, kube-proxy, kubectl) from the Go module proxy,
#    through the wrapper module tests/k8s/kube (k8s.io/kubernetes cannot be
#    go-installed: its go.mod replaces its staging modules by directories).
#    About 21 CPU-minutes cold; rebuilt only when that module changes.
# 3. CoreDNS v1.14.3 with only the kubernetes, errors and cache plugins
#    (tests/k8s/coredns), the cluster's DNS: the StatefulSet's peers find
#    each other by name.
# 4. The images, loaded into containerd by cluster.sh up: the pause image
#    (tests/k8s/pause) under registry.k8s.io/pause's name, and sandboxd's
#    own image made by deploy/image/build.sh from Debian's packages.
#
# Each step checks a stamp first, so a second run takes seconds.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${SBXK8S_CACHE:-/var/cache/sandboxd/k8s}
say() { echo "build.sh: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "run as root"; exit 1; }
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
mkdir -p "$cache/bin" "$cache/images"

pkgs=()
for p in etcd-server containerd runc containernetworking-plugins iptables conntrack mmdebstrap umoci skopeo curl openssl iproute2 util-linux procps findutils; do
	[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ]; then
	say "apt-get install ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

# sandboxd's image first, in the background: deploy/image/build.sh caches
# its root file system (mmdebstrap, minutes cold, mostly downloading and
# unpacking Debian's packages) and rebuilds sandboxd itself each time, so
# the image always holds the code under test. It overlaps the compiles
# below; its log is shown if it fails.
image_log=$(mktemp)
"$root/deploy/image/build.sh" "$cache/image" >/dev/null 2>"$image_log" &
image_pid=$!
trap 'kill $image_pid 2>/dev/null || true; rm -f "$image_log"' EXIT

# stamp_ok NAME KEY: has step NAME been done for KEY?
stamp_ok() { [ "$(cat "$cache/$1.stamp" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$cache/$1.stamp"; }
gover=$(go env GOVERSION)

key="$gover $(cat "$here/kube/go.mod" "$here/kube/go.sum" | sha256sum | cut -c1-16)"
if ! stamp_ok kube "$key"; then
	say "building Kubernetes v1.33.13 (about 21 CPU-minutes cold)"
	v=v1.33.13
	(cd "$here/kube" && CGO_ENABLED=0 go build -trimpath -o "$cache/bin/" \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=33 -X k8s.io/client-go/pkg/version.gitVersion=$v" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
		k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl)
	stamp kube "$key"
fi

key="$gover $(cat "$here/coredns/go.mod" "$here/coredns/go.sum" "$here/coredns/main.go" | sha256sum | cut -c1-16)"
if ! stamp_ok coredns "$key"; then
	say "building CoreDNS"
	(cd "$here/coredns" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$cache/bin/coredns" .)
	stamp coredns "$key"
fi

key="$gover $(sha256sum "$here/pause/main.go" | cut -c1-16)"
if ! stamp_ok pause "$key" || [ ! -s "$cache/images/pause.tar" ]; then
	say "packing the pause image"
	work=$(mktemp -d)
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/pause" ./tests/k8s/pause)
	umoci init --layout "$work/oci"
	umoci new --image "$work/oci:3.10"
	umoci unpack --image "$work/oci:3.10" "$work/bundle" >/dev/null
	install -m 0755 "$work/pause" "$work/bundle/rootfs/pause"
	umoci repack --image "$work/oci:3.10" "$work/bundle"
	umoci config --image "$work/oci:3.10" --config.entrypoint /pause
	rm -f "$cache/images/pause.tar"
	skopeo copy --quiet "oci:$work/oci:3.10" "docker-archive:$cache/images/pause.tar:registry.k8s.io/pause:3.10"
	rm -rf "$work"
	stamp pause "$key"
fi

say "waiting for sandboxd's image"
if ! wait $image_pid; then
	cat "$image_log" >&2
	say "deploy/image/build.sh failed"
	exit 1
fi
cp "$cache/image/sandboxd.tar" "$cache/images/sandboxd.tar"
