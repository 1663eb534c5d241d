#!/bin/bash
# Check an image build.sh made, without a container runtime: unpack it,
# start its sandboxd as the image's entrypoint would run, with the image's
# root as its root (a private mount namespace and pivot_root; chroot will
# not do, since the kernel refuses a user namespace to a chrooted process),
# on a loopback port, and use every runtime through it:
#
#   deploy/image/smoke.sh [IMAGE_TAR]        (as root; build/image/sandboxd.tar)
#
# It prints each check and exits non-zero on the first that fails. The
# unpacked image and the daemon go away at the end.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
image=${1:-$here/../../build/image/sandboxd.tar}
port=${PORT:-18099}
base=http://127.0.0.1:$port

die() { echo "smoke.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
[ -s "$image" ] || die "no image at $image: run deploy/image/build.sh"

work=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf --one-file-system "$work"
}
trap cleanup EXIT

skopeo copy --quiet "docker-archive:$image" "oci:$work/oci:smoke"
umoci unpack --image "$work/oci:smoke" "$work/bundle" >/dev/null
root=$work/bundle/rootfs
entry=$(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["process"]["args"]))' "$work/bundle/config.json")
[ "$entry" = "/usr/local/bin/sandboxd serve" ] || die "the image's entrypoint is \"$entry\""
[ -x "$root/usr/local/bin/sandboxd-metrics-adapter" ] || die "the image has no /usr/local/bin/sandboxd-metrics-adapter"
echo "smoke.sh: the image holds sandboxd-metrics-adapter"

# The daemon's mounts live in its own mount namespace and go with it.
unshare -m bash -ec '
	root=$1 port=$2
	mount --make-rprivate /
	mount --bind "$root" "$root"
	mount -t proc proc "$root/proc"
	mount --rbind /sys "$root/sys"
	mount --rbind /dev "$root/dev"
	mount -t tmpfs tmpfs "$root/run"
	cd "$root"
	mkdir -p .old
	pivot_root . .old
	cd /
	umount -l /.old
	exec /usr/local/bin/sandboxd serve --listen "127.0.0.1:$port" --replica smoke --log-format text
' smoke "$root" "$port" >"$work/daemon.log" 2>&1 &
pid=$!

for _ in $(seq 100); do
	curl -sf "$base/readyz" >/dev/null && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/daemon.log" >&2; die "sandboxd exited"; }
	sleep 0.1
done

# check NAME EXPECTED PATH BODY PYTHON: posts BODY to PATH and compares
# what PYTHON (reading the answer as d) prints with EXPECTED.
check() {
	local got
	got=$(curl -s "$base$3" -d "$4" | python3 -c "import json,sys; d=json.load(sys.stdin); print($5)") || true
	[ "$got" = "$2" ] || { tail -5 "$work/daemon.log" >&2; die "$1: got \"$got\", want \"$2\""; }
	echo "ok: $1"
}
check python 42 /v1/runs '{"runtime":"python","code":"print(6*7)"}' 'd["stdout"].strip()'
check "all namespaces" "user pid mount network ipc uts cgroup" /v1/runs '{"runtime":"python","code":"1"}' '" ".join(d["isolation"]["namespaces"])'
check "memory limit" memory_limit /v1/runs '{"runtime":"python","code":"x = bytearray(300 << 20)","limits":{"memory":"64MiB"}}' 'd["status"]'
check javascript 42 /v1/runs '{"runtime":"javascript","code":"console.log(6*7)"}' 'd["stdout"].strip()'
check c 42 /v1/runs '{"runtime":"c","code":"#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 6*7); }"}' 'd["stdout"].strip()'
check ruby 42 /v1/runs '{"runtime":"ruby","code":"puts 6*7"}' 'd["stdout"].strip()'
id=$(curl -s "$base/v1/sessions" -d '{}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
check "session: the data stack" 3 "/v1/sessions/$id/exec" '{"code":"import numpy as np, pandas as pd, matplotlib\npd.DataFrame({\"a\": np.arange(3)}).a.sum()"}' 'd["result"]["text/plain"]'
check "session: a plot" True "/v1/sessions/$id/exec" '{"code":"import matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()"}' '"image/png" in d["display"][0]'
echo "smoke.sh: the image serves every runtime"
