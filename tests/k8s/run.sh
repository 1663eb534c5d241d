#!/bin/bash
# The end-to-end test of deploy/kubernetes on a real one-node cluster:
#
#   tests/k8s/run.sh [go test flags]      (as root; scripts/test runs it)
#
# 1. build.sh: what the cluster needs, cached (minutes cold, seconds after);
# 2. a snapshot of the host (cluster.sh snapshot);
# 3. cluster.sh up: the cluster, in a network namespace with no way out;
# 4. e2e_test.go, run inside that network namespace;
# 5. cluster.sh down, then the snapshot again: the run fails if the host
#    differs in any process, mount, cgroup, iptables rule, sysctl, link,
#    route or path the cluster could have touched.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${SBXK8S_CACHE:-/var/cache/sandboxd/k8s}
say() { echo "run.sh: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "run as root"; exit 1; }
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

"$here/build.sh"
(cd "$root" && go vet -tags k8s ./tests/k8s && go test -c -tags k8s -o "$cache/e2e.test" ./tests/k8s)

# A cluster left by a run that was killed (CI stopped, the machine
# rebooted) is torn down first, so this run starts from the host as it
# should be.
if [ -e "${SBXK8S_DIR:-/var/lib/sandboxd-k8s}" ] || ip netns list | grep -qw '^sbxk8s'; then
	say "a cluster from an earlier run is left: tearing it down first"
	"$here/cluster.sh" down
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! "$here/cluster.sh" snapshot >"$work/before"; then
	say "cluster.sh snapshot failed: no picture of the host to compare with after"
	exit 1
fi
rc=0
finish() {
	local status=$?
	[ $rc = 0 ] && rc=$status
	if [ $rc != 0 ]; then
		say "failed: the cluster's state and logs follow"
		"$here/cluster.sh" exec kubectl get all,hpa,endpointslices -o wide 2>&1 | sed 's/^/  /' >&2 || true
		"$here/cluster.sh" exec kubectl describe pods 2>&1 | tail -80 | sed 's/^/  /' >&2 || true
		for p in $("$here/cluster.sh" exec kubectl get pods -o name 2>/dev/null); do
			echo "--- logs of $p" >&2
			"$here/cluster.sh" exec kubectl logs --all-containers --tail=40 "$p" 2>&1 | sed 's/^/  /' >&2 || true
		done
		for l in /var/lib/sandboxd-k8s/logs/*.log; do
			[ -f "$l" ] || continue
			echo "--- $l" >&2
			tail -15 "$l" | sed 's/^/  /' >&2
		done
	fi
	say "tearing the cluster down"
	"$here/cluster.sh" down || rc=1
	"$here/cluster.sh" snapshot >"$work/after"
	if ! diff -u "$work/before" "$work/after" >"$work/diff"; then
		say "the host is not as it was before the cluster (- before, + after):"
		cat "$work/diff" >&2
		rc=1
	else
		say "the host is as it was: processes, mounts, cgroups, iptables, sysctls, links, routes, paths"
	fi
	rm -rf "$work"
	exit $rc
}
trap finish EXIT

start=$(date +%s)
"$here/cluster.sh" up
say "cluster up in $(($(date +%s) - start)) s"
cd "$here"
"$here/cluster.sh" exec "$cache/e2e.test" -test.v -test.timeout 30m "$@" || rc=$?
