#!/bin/bash
# A one-node Kubernetes cluster for the end-to-end test of deploy/kubernetes,
# kept inside a network namespace with no way out:
#
#   tests/k8s/cluster.sh up          bring it up (tests/k8s/build.sh first)
#   tests/k8s/cluster.sh down        tear it down, leaving the host as before
#   tests/k8s/cluster.sh snapshot    print the host state down must restore
#   tests/k8s/cluster.sh exec CMD..  run CMD in the cluster's network, with
#                                    KUBECONFIG set and kubectl on PATH
#
# As root. ../shared/notes/kubernetes-local-cluster.md's recipe, and
# RATIONALE.md ("The Kubernetes test cluster") for the choices. In short:
#
# - Network: every component runs in the network namespace sbxk8s. Its
#   only devices are lo, a bridge node0 holding the node's address
#   10.99.0.1/24 and the pods' bridge cni0 (10.244.0.0/24); it has no
#   default route and no device that leads out of the namespace, so no
#   packet of the cluster's can leave the machine whatever is
#   misconfigured. kube-proxy's iptables chains live in that namespace's
#   tables and go with it.
# - Mounts: every component runs in one private mount namespace made by
#   unshare. containerd's and the kubelet's mounts never reach the host's,
#   and end when the last of the cluster's processes does. In it, files
#   holding the host's values are bound over the six /proc/sys files the
#   kubelet rewrites at start (vm.overcommit_memory, kernel.panic, ...), so
#   the host's stay as they were.
# - Files: everything lives in $SBXK8S_DIR (/var/lib/sandboxd-k8s); the
#   few paths that containerd 1.6 and the kubelet hard-code (/run/containerd,
#   /var/lib/cni, /var/log/pods, ...) are recorded at up and removed at
#   down if they were not there before.
# - Cgroups: the kubelet's kubepods trees (cgroup v1, cgroupfs driver) are
#   emptied and removed at down.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${SBXK8S_CACHE:-/var/cache/sandboxd/k8s}
bin=$cache/bin
dir=${SBXK8S_DIR:-/var/lib/sandboxd-k8s}
ns=sbxk8s
node=node1
node_ip=10.99.0.1
pod_cidr=10.244.0.0/24
svc_cidr=10.96.0.0/16
api_svc_ip=10.96.0.1
sock=$dir/containerd/containerd.sock
export KUBECONFIG=$dir/pki/admin.kubeconfig

# The /proc/sys files the kubelet sets at start (pkg/kubelet/cm's
# setupKernelTunables), and the ones kube-proxy may touch; snapshot
# compares all of them.
kubelet_sysctls=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
watched_sysctls=("${kubelet_sysctls[@]}" net/ipv4/ip_forward net/bridge/bridge-nf-call-iptables net/ipv4/conf/all/route_localnet net/netfilter/nf_conntrack_max)
# Paths containerd 1.6, its CNI library and the kubelet use whatever they
# are told.
hardcoded_paths=(/run/containerd /var/lib/cni /var/log/pods /var/log/containers /opt/containerd /etc/cni /var/lib/kubelet /usr/libexec/kubernetes /etc/kubernetes)
# The cluster's own programs, by path: snapshot counts them.
programs="$bin/|/usr/bin/etcd|/usr/bin/containerd|/usr/sbin/runc|/usr/bin/runc"

say() { echo "cluster.sh: $*" >&2; }
die() { say "$*"; exit 1; }
in_ns() { nsenter --net="/run/netns/$ns" -- "$@"; }

# snapshot prints what the cluster may touch on the host, one fact a line,
# sorted, so that down's result can be compared with up's starting point.
# Its loops test with if, never with a bare `test && echo`: a loop's status
# is its last command's, and under pipefail a false test on the last
# /proc entry (any process that is not the cluster's) failed the snapshot.
snapshot() {
	{
		ip -o link show | awk -F': ' '{print "link " $2}' | sed 's/@.*//'
		ip route show | sed 's/^/route4 /'
		ip -6 route show | sed 's/^/route6 /'
		for t in iptables ip6tables; do
			for table in filter nat mangle raw; do
				$t -t "$table" -S 2>/dev/null | sed "s/^/$t $table /" || true
			done
		done
		for s in "${watched_sysctls[@]}"; do
			if [ -r "/proc/sys/$s" ]; then echo "sysctl $s=$(cat "/proc/sys/$s")"; fi
		done
		findmnt -rn -o TARGET | sed 's/^/mount /'
		for c in /sys/fs/cgroup/*/; do
			find "$c" -maxdepth 1 -mindepth 1 -type d -printf 'cgroup %p\n'
		done
		ls /run/netns 2>/dev/null | sed 's/^/netns /' || true
		for p in "${hardcoded_paths[@]}" "$dir"; do
			if [ -e "$p" ]; then echo "path $p"; fi
		done
		# Processes running one of the cluster's programs.
		for e in /proc/[0-9]*/exe; do
			t=$(readlink "$e" 2>/dev/null) || continue
			if [[ $t =~ ^($programs) ]]; then echo "process $t"; fi
		done
	} | LC_ALL=C sort
	return 0
}

pki() {
	local p=$dir/pki
	mkdir -p "$p"
	cd "$p"
	cert() { # name subject [extensions] [ca]
		local name=$1 subj=$2 ext=${3:-} ca=${4:-ca}
		openssl genrsa -out "$name.key" 2048 2>/dev/null
		openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null
		printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "$ext" >"$name.ext"
		openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial \
			-days 2 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
	}
	for ca in ca front-proxy-ca; do
		openssl req -x509 -newkey rsa:2048 -nodes -keyout "$ca.key" -out "$ca.crt" \
			-days 2 -subj "/CN=sandboxd-k8s-$ca" 2>/dev/null
	done
	cert apiserver "/CN=kube-apiserver" \
		"extendedKeyUsage=serverAuth
subjectAltName=IP:$node_ip,IP:$api_svc_ip,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	# One identity for every component and the test: a test cluster of one
	# node, in a network of its own, needs no finer one.
	cert admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth"
	cert front-proxy-client "/CN=front-proxy-client" "extendedKeyUsage=clientAuth" front-proxy-ca
	openssl genrsa -out sa.key 2048 2>/dev/null
	openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
	cat >admin.kubeconfig <<-EOF
	apiVersion: v1
	kind: Config
	clusters:
	- name: sandboxd-k8s
	  cluster:
	    server: https://$node_ip:6443
	    certificate-authority: $p/ca.crt
	users:
	- name: admin
	  user:
	    client-certificate: $p/admin.crt
	    client-key: $p/admin.key
	contexts:
	- name: sandboxd-k8s
	  context: {cluster: sandboxd-k8s, user: admin}
	current-context: sandboxd-k8s
	EOF
	cd - >/dev/null
}

configs() {
	local c=$dir/conf
	mkdir -p "$c" "$dir/cni/net.d" "$dir/cni/data" "$dir/cni/cache" "$dir/containerd" "$dir/kubelet" "$dir/logs/pods" "$dir/sysctl"
	cat >"$c/containerd.toml" <<-EOF
	version = 2
	root = "$dir/containerd/root"
	state = "$dir/containerd/state"
	[grpc]
	  address = "$sock"
	[plugins."io.containerd.internal.v1.opt"]
	  path = "$dir/containerd/opt"
	[plugins."io.containerd.grpc.v1.cri"]
	  sandbox_image = "registry.k8s.io/pause:3.10"
	  # No process here may lower its oom_score_adj (no CAP_SYS_RESOURCE):
	  # without this every pod fails in runc.
	  restrict_oom_score_adj = true
	  enable_selinux = false
	  [plugins."io.containerd.grpc.v1.cri".cni]
	    bin_dir = "/usr/lib/cni"
	    conf_dir = "$dir/cni/net.d"
	  [plugins."io.containerd.grpc.v1.cri".containerd]
	    snapshotter = "overlayfs"
	    default_runtime_name = "runc"
	    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
	      runtime_type = "io.containerd.runc.v2"
	      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
	        SystemdCgroup = false
	EOF
	cat >"$dir/cni/net.d/10-sandboxd-k8s.conflist" <<-EOF
	{
	  "cniVersion": "1.0.0",
	  "name": "sandboxd-k8s",
	  "plugins": [
	    {
	      "type": "bridge",
	      "bridge": "cni0",
	      "isGateway": true,
	      "ipMasq": false,
	      "hairpinMode": true,
	      "ipam": {
	        "type": "host-local",
	        "dataDir": "$dir/cni/data",
	        "ranges": [[{"subnet": "$pod_cidr"}]],
	        "routes": [{"dst": "0.0.0.0/0"}]
	      }
	    },
	    {"type": "portmap", "capabilities": {"portMappings": true}},
	    {"type": "loopback"}
	  ]
	}
	EOF
	# The pods' resolver: the cluster's DNS and nothing above it.
	echo "nameserver $node_ip" >"$c/resolv.conf"
	cat >"$c/kubelet.yaml" <<-EOF
	apiVersion: kubelet.config.k8s.io/v1beta1
	kind: KubeletConfiguration
	address: $node_ip
	readOnlyPort: 0
	authentication:
	  anonymous: {enabled: false}
	  webhook: {enabled: false}
	  x509: {clientCAFile: $dir/pki/ca.crt}
	authorization: {mode: AlwaysAllow}
	containerRuntimeEndpoint: unix://$sock
	cgroupDriver: cgroupfs
	failCgroupV1: false
	failSwapOn: false
	clusterDNS: [$node_ip]
	clusterDomain: cluster.local
	resolvConf: $c/resolv.conf
	podLogsDir: $dir/logs/pods
	volumePluginDir: $dir/kubelet/volume-plugins
	maxPods: 30
	imageGCHighThresholdPercent: 100
	imageGCLowThresholdPercent: 99
	evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
	serializeImagePulls: false
	EOF
	cat >"$c/kube-proxy.yaml" <<-EOF
	apiVersion: kubeproxy.config.k8s.io/v1alpha1
	kind: KubeProxyConfiguration
	clientConnection: {kubeconfig: $KUBECONFIG}
	hostnameOverride: $node
	mode: iptables
	clusterCIDR: $pod_cidr
	bindAddress: $node_ip
	healthzBindAddress: 127.0.0.1:10256
	metricsBindAddress: 127.0.0.1:10249
	# Zeros: leave the host's conntrack settings alone (nf_conntrack_max is
	# not per network namespace).
	conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
	EOF
	# The cluster's zones from the API server; every other name is
	# NXDOMAIN, which is what a real cluster's upstream answers for a name
	# that does not exist (the search list ends in the bare name: a
	# removed peer's "sandboxd-2.sandboxd-headless" must come back as not
	# found, not as a failure).
	cat >"$c/Corefile" <<-EOF
	cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
	    bind $node_ip
	    errors
	    kubernetes cluster.local in-addr.arpa ip6.arpa {
	        kubeconfig $KUBECONFIG sandboxd-k8s
	        pods insecure
	    }
	    cache 5
	}
	.:53 {
	    bind $node_ip
	    errors
	    template ANY ANY {
	        rcode NXDOMAIN
	    }
	}
	EOF
	for s in "${kubelet_sysctls[@]}"; do
		cat "/proc/sys/$s" >"$dir/sysctl/${s//\//.}"
	done
}

# inside runs in the cluster's network and private mount namespaces (up
# starts it there) and starts each component, then waits; down stops them.
inside() {
	for s in "${kubelet_sysctls[@]}"; do
		mount --bind "$dir/sysctl/${s//\//.}" "/proc/sys/$s"
	done
	mkdir -p "$dir/pids"
	start() { # name program args...
		local name=$1
		shift
		"$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
		echo $! >"$dir/pids/$name"
	}
	wait_for() { # what command...
		local what=$1 i
		shift
		for i in $(seq 1 120); do
			"$@" >/dev/null 2>&1 && return 0
			sleep 0.5
		done
		say "$what did not come up in 60 s"
		return 1
	}
	local p=$dir/pki
	start etcd /usr/bin/etcd --name sandboxd-k8s --data-dir "$dir/etcd" \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster sandboxd-k8s=http://127.0.0.1:2380 --quota-backend-bytes 1073741824
	wait_for etcd curl -sf http://127.0.0.1:2379/health
	start kube-apiserver "$bin/kube-apiserver" \
		--etcd-servers=http://127.0.0.1:2379 \
		--advertise-address=$node_ip --bind-address=$node_ip --secure-port=6443 \
		--service-cluster-ip-range=$svc_cidr \
		--tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
		--client-ca-file="$p/ca.crt" \
		--kubelet-client-certificate="$p/admin.crt" --kubelet-client-key="$p/admin.key" \
		--kubelet-preferred-address-types=InternalIP \
		--service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--authorization-mode=Node,RBAC --allow-privileged=true \
		--enable-aggregator-routing=true \
		--requestheader-client-ca-file="$p/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
		--requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
		--requestheader-extra-headers-prefix=X-Remote-Extra- \
		--proxy-client-cert-file="$p/front-proxy-client.crt" --proxy-client-key-file="$p/front-proxy-client.key" \
		--profiling=false
	wait_for kube-apiserver curl -sf --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" "https://$node_ip:6443/readyz"
	# The HPA looks every 5 s (15 s by default), so the test's scale-up and
	# scale-down take a minute, not several.
	start kube-controller-manager "$bin/kube-controller-manager" \
		--kubeconfig="$KUBECONFIG" --authentication-kubeconfig="$KUBECONFIG" --authorization-kubeconfig="$KUBECONFIG" \
		--bind-address=127.0.0.1 --leader-elect=false \
		--service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
		--cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
		--use-service-account-credentials=false --service-cluster-ip-range=$svc_cidr \
		--horizontal-pod-autoscaler-sync-period=5s --profiling=false
	start kube-scheduler "$bin/kube-scheduler" \
		--kubeconfig="$KUBECONFIG" --authentication-kubeconfig="$KUBECONFIG" --authorization-kubeconfig="$KUBECONFIG" \
		--bind-address=127.0.0.1 --leader-elect=false --profiling=false
	start containerd /usr/bin/containerd --config "$dir/conf/containerd.toml"
	wait_for containerd test -S "$sock"
	start kubelet "$bin/kubelet" --config="$dir/conf/kubelet.yaml" --kubeconfig="$KUBECONFIG" \
		--root-dir="$dir/kubelet" --cert-dir="$dir/kubelet/pki" \
		--hostname-override=$node --node-ip=$node_ip
	start kube-proxy "$bin/kube-proxy" --config="$dir/conf/kube-proxy.yaml"
	start coredns "$bin/coredns" -conf "$dir/conf/Corefile"
	echo up >"$dir/inside.up"
	wait
}

up() {
	[ "$(id -u)" = 0 ] || die "run as root"
	for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl coredns; do
		[ -x "$bin/$b" ] || die "no $bin/$b: run tests/k8s/build.sh"
	done
	! ip netns list | grep -qw "^$ns" || die "network namespace $ns exists: is a cluster up? cluster.sh down first"
	[ ! -e "$dir" ] || die "$dir exists: cluster.sh down first"
	mkdir -p "$dir/logs"
	for p in "${hardcoded_paths[@]}"; do
		[ -e "$p" ] && echo "$p"
	done >"$dir/paths.before" || true
	ls /run/netns 2>/dev/null >"$dir/netns.before" || true
	# ip netns add makes /run/netns a mount point of its own (a shared
	# bind mount of itself) the first time it runs on a host: down
	# unmounts it again if it was not one before.
	[ -d /run/netns ] && echo dir >"$dir/netns.dir.before"
	mountpoint -q /run/netns && echo mount >"$dir/netns.dir.before"
	for c in /sys/fs/cgroup/*/kubepods; do
		[ -d "$c" ] && echo "$c"
	done >"$dir/kubepods.before" || true

	say "network namespace $ns: node $node_ip, pods $pod_cidr, services $svc_cidr; no route out"
	ip netns add $ns
	ip -n $ns link set lo up
	ip -n $ns link add node0 type bridge
	ip -n $ns addr add $node_ip/24 dev node0
	ip -n $ns link set node0 up
	# Service addresses are translated by kube-proxy's chains; the route
	# only lets a packet to one reach them (it goes nowhere else: node0
	# has no port).
	ip -n $ns route add $svc_cidr dev node0
	in_ns sysctl -qw net.ipv4.ip_forward=1
	in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1

	pki
	configs
	say "starting etcd, the control plane, containerd, the kubelet, kube-proxy and CoreDNS (logs in $dir/logs)"
	setsid nsenter --net="/run/netns/$ns" -- unshare --mount --propagation private -- \
		"$here/cluster.sh" inside >"$dir/logs/inside.log" 2>&1 </dev/null &
	echo $! >"$dir/inside.pid"
	local i
	for i in $(seq 1 240); do
		[ -e "$dir/inside.up" ] && break
		kill -0 "$(cat "$dir/inside.pid")" 2>/dev/null || { tail -20 "$dir/logs/inside.log" >&2; die "bring-up failed"; }
		sleep 0.5
	done
	[ -e "$dir/inside.up" ] || die "bring-up took over 2 minutes"
	say "loading images"
	for img in "$cache"/images/*.tar; do
		ctr --address "$sock" -n k8s.io images import "$img" >/dev/null
	done
	for i in $(seq 1 120); do
		in_ns "$bin/kubectl" get node $node -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True && break
		sleep 1
	done
	in_ns "$bin/kubectl" wait --for=condition=Ready node/$node --timeout=10s >/dev/null
	# A component that failed at start (a bad flag, a missing plugin)
	# fails the bring-up here, with its log, not a test later.
	local f
	for f in "$dir"/pids/*; do
		kill -0 "$(cat "$f")" 2>/dev/null && continue
		tail -20 "$dir/logs/$(basename "$f").log" >&2
		die "$(basename "$f") exited"
	done
	say "node $node is Ready"
}

# stop ends a component: TERM, then KILL after 15 s. Only if that pid is
# still the component (its command line names $dir): after a reboot or a
# long time the number may be another process's.
stop() {
	local f=$dir/pids/$1 pid i
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir" || return 0
	kill "$pid" 2>/dev/null || return 0
	for i in $(seq 1 30); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.5
	done
	kill -9 "$pid" 2>/dev/null || true
}

# kill_kubepods kills every process in the kubelet's cgroups (pods,
# containers, and the sandboxes sandboxd made inside them), until none is
# left.
kill_kubepods() {
	local i procs
	for i in $(seq 1 40); do
		procs=$(find /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/memory/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
		[ -z "$procs" ] && return 0
		# A frozen cgroup would hold its processes against SIGKILL.
		find /sys/fs/cgroup/freezer/kubepods -name freezer.state -exec sh -c 'echo THAWED >"$1"' _ {} \; 2>/dev/null || true
		kill -9 $procs 2>/dev/null || true
		sleep 0.5
	done
	say "processes left in kubepods: $procs"
	return 1
}

down() {
	[ "$(id -u)" = 0 ] || die "run as root"
	[ -d "$dir" ] || ip netns list | grep -qw "^$ns" || { say "no cluster is up"; return 0; }
	local rc=0 c p
	# The kubelet first, so it restarts nothing; then every pod's process;
	# then the shims our containerd started (they stay when containerd
	# goes), then the rest, control plane last.
	stop kubelet
	kill_kubepods || rc=1
	for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $sock" || true); do
		kill -9 "$p" 2>/dev/null || true
	done
	for c in coredns kube-proxy containerd kube-scheduler kube-controller-manager kube-apiserver etcd; do
		stop $c
	done
	if [ -f "$dir/inside.pid" ]; then
		p=$(cat "$dir/inside.pid")
		if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "cluster.sh inside"; then
			kill "$p" 2>/dev/null || true
		fi
	fi
	# Wait for the mount namespace's last process, so no mount holds a
	# file below $dir.
	for p in $(seq 1 20); do
		pgrep -f "$here/cluster.sh inside" >/dev/null || break
		sleep 0.5
	done
	# The kubepods trees, innermost first, in every hierarchy, if the
	# cluster made them.
	for c in /sys/fs/cgroup/*/kubepods; do
		[ -d "$c" ] || continue
		grep -qxF "$c" "$dir/kubepods.before" 2>/dev/null && continue
		find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
		[ -d "$c" ] && { say "cannot remove $c"; rc=1; }
	done
	ip netns del $ns 2>/dev/null || true
	# The pods' network namespaces were pinned under /run/netns by
	# containerd in the private mount namespace: only the empty files are
	# left on the host's /run.
	if [ -f "$dir/netns.before" ]; then
		for p in $(ls /run/netns 2>/dev/null); do
			grep -qxF "$p" "$dir/netns.before" || rm -f "/run/netns/$p"
		done
		if [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
			was=$(cat "$dir/netns.dir.before" 2>/dev/null || true)
			if [ "$was" != mount ] && mountpoint -q /run/netns; then
				umount /run/netns || { say "cannot unmount /run/netns"; rc=1; }
			fi
			[ -n "$was" ] || rmdir /run/netns 2>/dev/null || true
		fi
	fi
	if [ -f "$dir/paths.before" ]; then
		for p in "${hardcoded_paths[@]}"; do
			[ -e "$p" ] && ! grep -qxF "$p" "$dir/paths.before" && rm -rf --one-file-system "$p"
		done
	fi
	rm -rf --one-file-system "$dir" || rc=1
	return $rc
}

case ${1:-} in
up) up ;;
down) down ;;
inside) inside ;;
snapshot) snapshot ;;
exec)
	shift
	PATH=$bin:$PATH in_ns "$@"
	;;
*) die "usage: cluster.sh up|down|snapshot|exec CMD..." ;;
esac
