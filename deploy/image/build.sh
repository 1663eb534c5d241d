#!/bin/bash
# Build the sandboxd container image from Debian packages, with no registry
# and no download but Debian's mirror (and the Go module proxy, for
# sandboxd's own build):
#
#   deploy/image/build.sh [OUT_DIR]          (as root; OUT_DIR: build/image)
#
# It writes OUT_DIR/sandboxd.tar, a docker-archive image named
# sandboxd:latest, which loads with
#   ctr -n k8s.io images import OUT_DIR/sandboxd.tar     (containerd)
#   docker load -i OUT_DIR/sandboxd.tar                   (docker, podman)
# or goes to a registry with
#   skopeo copy docker-archive:OUT_DIR/sandboxd.tar docker://REGISTRY/sandboxd:TAG
#
# The root file system is Debian bookworm (minbase) with the runtimes
# sandboxd offers: python3 with numpy, pandas and matplotlib, node, gcc and
# g++, ruby; sandboxd itself is a static binary at /usr/local/bin, with
# sandboxd-init, the small init binary each sandbox starts, beside it, and
# so is sandboxd-metrics-adapter, the custom-metrics adapter the HPA of
# deploy/kubernetes/autoscaling reads queue depth through (the same image
# runs both: one image to build, load and pin). The
# root file system is cached in OUT_DIR and made again only when the
# package list changes (about 3 to 6 minutes when it is).
#
# Environment: MIRROR (default: the first deb.debian.org-style URI of the
# host's apt sources), SUITE (bookworm), TAG (latest).
# Needs: mmdebstrap, umoci, skopeo (apt-get install mmdebstrap umoci skopeo)
# and Go.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/build/image}
suite=${SUITE:-bookworm}
tag=${TAG:-latest}

# The runtimes of internal/runtimes and what the session kernels import.
packages=(
	ca-certificates
	python3 python3-numpy python3-pandas python3-matplotlib
	nodejs
	gcc g++ libc6-dev
	ruby
)

die() { echo "build.sh: $*" >&2; exit 1; }

for tool in mmdebstrap umoci skopeo go; do
	command -v "$tool" >/dev/null || die "$tool is missing: apt-get install mmdebstrap umoci skopeo (and Go for sandboxd)"
done
[ "$(id -u)" = 0 ] || die "run as root: mmdebstrap and umoci unpack keep the files' owners"

# host_mirror is the first Debian archive URI of the host's apt sources
# (deb822 or one-line format), so the image comes from the mirror this
# machine already trusts.
host_mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '
			/^URIs:/ && $2 !~ /security/ { print $2; exit }
			/^deb / && $2 !~ /security/ && $2 !~ /^\[/ { print $2; exit }
			/^deb \[/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($i !~ /security/) { print $i; exit } } }
		' "$f"
	done | head -n 1
}
mirror=${MIRROR:-$(host_mirror)}
[ -n "$mirror" ] || die "no Debian mirror in the host's apt sources: set MIRROR"

mkdir -p "$out"
work=$(mktemp -d "$out/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The root file system, cached under a name that changes with what goes
# into it.
key=$(printf '%s\n' "$suite" "$mirror" "${packages[@]}" | sha256sum | cut -c1-16)
rootfs=$out/rootfs-$key.tar
if [ ! -s "$rootfs" ]; then
	echo "build.sh: making the root file system from $mirror ($suite)" >&2
	rm -f "$out"/rootfs-*.tar
	mmdebstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
		--aptopt='Acquire::Retries "3"' \
		--customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
		"$suite" "$out/rootfs-$key.part.tar" "$mirror"
	mv "$out/rootfs-$key.part.tar" "$rootfs"
fi

echo "build.sh: building sandboxd" >&2
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/" ./cmd/sandboxd ./cmd/sandboxd-init)
echo "build.sh: building sandboxd-metrics-adapter (a module of its own)" >&2
(cd "$root/cmd/sandboxd-metrics-adapter" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/sandboxd-metrics-adapter" .)

echo "build.sh: packing the image" >&2
layout=$work/oci
bundle=$work/bundle
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci unpack --image "$layout:$tag" "$bundle"
tar -xpf "$rootfs" -C "$bundle/rootfs" --numeric-owner
install -D -m 0755 "$work/sandboxd" "$bundle/rootfs/usr/local/bin/sandboxd"
# Beside sandboxd, of the same build: each sandbox's init (README, Set up).
install -D -m 0755 "$work/sandboxd-init" "$bundle/rootfs/usr/local/bin/sandboxd-init"
install -D -m 0755 "$work/sandboxd-metrics-adapter" "$bundle/rootfs/usr/local/bin/sandboxd-metrics-adapter"
umoci repack --image "$layout:$tag" "$bundle"
umoci config --image "$layout:$tag" \
	--config.entrypoint /usr/local/bin/sandboxd \
	--config.cmd serve \
	--config.exposedports 8080/tcp \
	--config.workingdir / \
	--config.label org.opencontainers.image.title=sandboxd
rm -f "$out/sandboxd.tar"
skopeo copy --quiet "oci:$layout:$tag" "docker-archive:$out/sandboxd.tar:sandboxd:$tag"
echo "$out/sandboxd.tar"
