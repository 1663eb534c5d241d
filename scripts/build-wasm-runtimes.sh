#!/usr/bin/env bash
# build-wasm-runtimes.sh builds the interpreters of sandboxd's wasm backend
# from Debian's own source packages, with Debian's clang and wasi-libc:
#
#   CPython 3.11 (bookworm's python3.11, with zlib from bookworm's zlib)
#   QuickJS      (trixie's quickjs: bookworm has none; source only)
#
# Nothing prebuilt is downloaded: sources come through apt-get source from
# the mirror this machine is configured with, over a private apt
# configuration (its own sources.list, lists and cache under the work
# directory; nothing in /etc changes). The toolchain is installed with
# apt-get install from the machine's own configuration.
#
# It installs, into $SANDBOXD_WASM_DIR (default /usr/local/lib/sandboxd/wasm):
#
#   python/python.wasm                  stripped CPython for wasm32-wasi, with
#                                       scripts/wasm/python-main.c as main
#   python/lib/python3.11/...           its stdlib, precompiled (.pyc)
#   quickjs/qjs.wasm                    QuickJS with scripts/wasm/qjs-driver.c
#   VERSIONS                            name=version lines
#
# Run it as root. It is idempotent and cached: every step records a key
# (source version, toolchain version, flags, inputs' hashes) in
# $SANDBOXD_WASM_WORK/stamps and is skipped when its key is unchanged and
# its output exists. Keep $SANDBOXD_WASM_WORK (default
# /var/cache/sandboxd/wasm-build) between CI steps to make reruns take
# seconds. Timings are printed per step.
#
# Environment:
#   SANDBOXD_WASM_DIR          install directory
#   SANDBOXD_WASM_WORK         work directory (sources, build trees, stamps)
#   SANDBOXD_WASM_APT_MAX_AGE  seconds before the private source lists are
#                              refreshed (default 86400)
#   SANDBOXD_WASM_SMOKE        0 skips the smoke test (run with wazero
#                              through `go run` when go is on PATH)
#   JOBS                       parallel make jobs (default: nproc)
set -euo pipefail

DEST=${SANDBOXD_WASM_DIR:-/usr/local/lib/sandboxd/wasm}
WORK=${SANDBOXD_WASM_WORK:-/var/cache/sandboxd/wasm-build}
APT_MAX_AGE=${SANDBOXD_WASM_APT_MAX_AGE:-86400}
JOBS=${JOBS:-$(nproc)}
SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPTS/.." && pwd)

LLVM=19
BUILD_PYTHON=/usr/bin/python3.11
# Debian's packages: the toolchain for wasm32-wasi, and what the host side
# of the CPython build and apt-get source need.
DEPS=(clang-$LLVM lld-$LLVM llvm-$LLVM libclang-rt-$LLVM-dev-wasm32 wasi-libc wabt
	python3.11 dpkg-dev make xz-utils bzip2 patch)

# A private sysroot with wasi-libc only (symlinks to Debian's
# /usr/include/wasm32-wasi and /usr/lib/wasm32-wasi). --sysroot=/usr would
# work too, but clang then also searches /usr/include, and configure would
# find the host's x86-64 headers (ffi.h, bzlib.h, ...) for libraries that
# have no wasm build.
SYSROOT=$WORK/sysroot
CC_WASI="clang-$LLVM --target=wasm32-wasi --sysroot=$SYSROOT"
AR_WASI=llvm-ar-$LLVM
RANLIB_WASI=llvm-ranlib-$LLVM
STRIP_WASI=llvm-strip-$LLVM

# Flags, part of each step's cache key.
ZLIB_CFLAGS_WASI="-O2"
# zlib 1.2.13 is K&R C: clang 19 warns on every function. Not in the key.
ZLIB_WARN="-Wno-deprecated-non-prototype"
PY_OPT="-DNDEBUG -fwrapv -O2"
# 3.11 caps recursion at 600 on WASI for its 512 KiB stack; with the 8 MiB
# stack below (as 3.12 has), the native default of 1000 holds.
PY_EXTRA_CFLAGS="-Wno-int-conversion -DPy_DEFAULT_RECURSION_LIMIT=1000"
# After configure's "-z stack-size=524288 ... --initial-memory=10485760" on
# the link line: wasm-ld takes the last of each.
PY_LDFLAGS_NODIST="-z stack-size=8388608 -Wl,--stack-first -Wl,--initial-memory=20971520"
PY_CONFIGURE_ARGS=(--host=wasm32-unknown-wasi --with-build-python=$BUILD_PYTHON
	--prefix=/usr/local --disable-test-modules --without-ensurepip
	# configure turns pymalloc off for WASI; with dlmalloc under every
	# small object, object-heavy loops ran 1.3-1.7x slower (bench/wasm).
	--with-pymalloc
	# time.sleep would call clock_nanosleep(TIMER_ABSTIME), which wasi-libc
	# turns into an absolute-time poll_oneoff that wazero refuses (ENOTSUP):
	# make it use nanosleep, a relative sleep (configure also looks in -lrt).
	ac_cv_func_clock_nanosleep=no ac_cv_lib_rt_clock_nanosleep=no)
# Parts of the stdlib that cannot work without processes, threads, a GUI
# or a network, or that are tests: left out of the install.
PY_STDLIB_DROP=(test idlelib tkinter turtledemo turtle.py ensurepip
	lib2to3/tests unittest/test ctypes/test distutils/tests sqlite3/test
	tkinter/test __phello__ venv)
# WASI has no working directory: wasi-libc starts at "/", where sandboxd
# mounts the workspace as well as at /workspace. Start where the process
# backend starts, so os.getcwd() says the same on both.
PY_SITECUSTOMIZE='# sandboxd: start in the workspace, as the process backend does.
import os
try:
    os.chdir("/workspace")
except OSError:
    pass
del os'
QJS_CFLAGS="-O2 -fwrapv -D_GNU_SOURCE"
# QuickJS's native stack: 2 MiB, first in memory so that an overflow traps
# instead of overwriting data. The driver caps JS recursion at 1 MiB of it
# (~3600 frames): deeper, wazero's own native stack (~28 KB per QuickJS
# frame, which the memory limit does not see) would reach its 400 MB ceiling.
QJS_LDFLAGS="-Wl,-z,stack-size=2097152 -Wl,--stack-first"

T0=$(date +%s.%N)

log() { printf '%s\n' "build-wasm-runtimes: $*" >&2; }
die() { log "error: $*"; exit 1; }

# step NAME CMD...: runs CMD and prints how long it took.
step() {
	local name=$1 t
	shift
	t=$(date +%s.%N)
	log "-- $name"
	"$@"
	log "-- $name: $(since "$t")"
}

# fresh STAMP KEY OUTPUT...: whether the step recorded KEY last time and its
# outputs all exist.
fresh() {
	local stamp=$WORK/stamps/$1 key=$2
	shift 2
	[[ -f $stamp && $(cat "$stamp") == "$key" ]] || return 1
	local o
	for o in "$@"; do [[ -e $o ]] || return 1; done
}

stamp() { mkdir -p "$WORK/stamps"; printf '%s' "$2" >"$WORK/stamps/$1"; }

# since T: seconds elapsed since T (from date +%s.%N), as "12.3s".
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }'; }

hash() { cat "$@" | sha256sum | cut -c1-16; }

pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }

[[ $(id -u) == 0 ]] || die "run as root (it installs Debian packages and writes $DEST)"

install_deps() {
	local missing=() p
	for p in "${DEPS[@]}"; do
		[[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		log "toolchain present: ${DEPS[*]}"
		return
	fi
	log "installing ${missing[*]}"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; then
		apt-get update
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
	fi
}

make_sysroot() {
	[[ -f /usr/include/wasm32-wasi/stdio.h && -f /usr/lib/wasm32-wasi/libc.a ]] ||
		die "wasi-libc is not where Debian puts it (/usr/include/wasm32-wasi, /usr/lib/wasm32-wasi)"
	mkdir -p "$SYSROOT/include" "$SYSROOT/lib"
	ln -sfn /usr/include/wasm32-wasi "$SYSROOT/include/wasm32-wasi"
	ln -sfn /usr/lib/wasm32-wasi "$SYSROOT/lib/wasm32-wasi"
}

# debian_uris prints "URI SIGNED-BY SUITE..." for each deb entry of the
# machine's apt sources (deb822 .sources files and one-line .list files).
debian_uris() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		awk '
			function flush() {
				if (types ~ /(^|[ \t])deb([ \t]|$)/ && uris != "" && enabled != "no")
					print uris "\t" signed "\t" suites
				types = uris = suites = signed = enabled = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{
				key = tolower($1); sub(/:$/, "", key)
				val = $0; sub(/^[^:]*:[ \t]*/, "", val)
				if (key == "types") types = val
				else if (key == "uris") uris = val
				else if (key == "suites") suites = val
				else if (key == "signed-by") signed = val
				else if (key == "enabled") enabled = tolower(val)
			}
			END { flush() }' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f $f ]] || continue
		awk '$1 == "deb" {
			signed = ""
			i = 2
			if ($2 ~ /^\[/) {
				for (; i <= NF; i++) {
					if ($i ~ /signed-by=/) { signed = $i; sub(/.*signed-by=/, "", signed); sub(/\]$/, "", signed) }
					if ($i ~ /\]$/) break
				}
				i++
			}
			print $i "\t" signed "\t" $(i + 1)
		}' "$f"
	done
}

# write_sources FILE MODE: MODE "mirror" writes deb-src lines, component
# main, for every Debian deb entry of the machine; MODE "trixie" writes one
# deb-src line for trixie main on the machine's first Debian mirror.
write_sources() {
	local out=$1 mode=$2 uris signed suites uri suite opt tmp
	tmp=$(mktemp)
	while IFS=$'\t' read -r uris signed suites; do
		opt=""
		[[ -n $signed ]] && opt="[signed-by=$signed] "
		for uri in $uris; do
			if [[ $mode == trixie ]]; then
				[[ $uri == */debian || $uri == */debian/ ]] || continue
				echo "deb-src ${opt}$uri trixie main" >>"$tmp"
				break 2
			fi
			for suite in $suites; do
				echo "deb-src ${opt}$uri $suite main" >>"$tmp"
			done
		done
	done < <(debian_uris)
	[[ -s $tmp ]] || die "no Debian deb entry found in /etc/apt to mirror as deb-src"
	if ! cmp -s "$tmp" "$out"; then
		mv "$tmp" "$out"
	else
		rm -f "$tmp"
	fi
}

# apt_private NAME MODE: prepares $WORK/apt-NAME and sets APT_OPTS to use it.
apt_private() {
	local dir=$WORK/apt-$1 mode=$2
	mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
	write_sources "$dir/sources.list" "$mode"
	APT_OPTS=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o APT::Sandbox::User=root)
	local mark=$dir/lists/.updated
	APT_LISTS_MARK=$mark
	if [[ ! -f $mark || $dir/sources.list -nt $mark ||
		$(($(date +%s) - $(stat -c %Y "$mark"))) -gt $APT_MAX_AGE ]]; then
		log "apt-get update (private $1 sources: $(tr '\n' ';' <"$dir/sources.list"))"
		apt-get "${APT_OPTS[@]}" update
		touch "$mark"
	fi
}

# fetch_source PKG: apt-get source of the newest version of PKG the private
# sources offer that the mirror serves, unpacked with Debian's patches into
# $WORK/src/PKG_VERSION; sets SRC and SRC_VERSION.
fetch_source() {
	local pkg=$1 v w n versions=() tmp
	mapfile -t versions < <(apt-cache "${APT_OPTS[@]}" showsrc --only-source "$pkg" |
		awk '/^Version:/ {print $2}' | sort -u)
	((${#versions[@]})) || die "no source package $pkg in the private apt sources"
	# newest first, by Debian's own ordering
	mapfile -t versions < <(for v in "${versions[@]}"; do
		n=0
		for w in "${versions[@]}"; do dpkg --compare-versions "$w" gt "$v" && n=$((n + 1)); done
		echo "$n $v"
	done | sort -n | cut -d' ' -f2)
	for v in "${versions[@]}"; do
		SRC=$WORK/src/${pkg}_${v//:/%}
		SRC_VERSION=$v
		if [[ -f $SRC/.unpacked ]]; then
			log "$pkg $v: source already unpacked"
			return
		fi
		local missing=$WORK/src/.missing-${pkg}_${v//:/%}
		if [[ -f $missing && $missing -nt $APT_LISTS_MARK ]]; then
			continue # not served last time, and the lists have not changed
		fi
		tmp=$WORK/src/.fetch-$pkg
		rm -rf "$tmp" "$SRC"
		mkdir -p "$tmp"
		if (cd "$tmp" && apt-get "${APT_OPTS[@]}" source "$pkg=$v"); then
			local d
			d=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -1)
			[[ -n $d ]] || die "apt-get source $pkg=$v unpacked nothing"
			mv "$d" "$SRC"
			touch "$SRC/.unpacked"
			rm -rf "$tmp"
			return
		fi
		# A version listed in a suite's index may be gone from the mirror
		# (a security update superseded by a point release): try the next.
		log "$pkg $v: not served by the mirror, trying an older version"
		rm -rf "$tmp"
		touch "$missing"
	done
	die "could not fetch any version of $pkg (${versions[*]})"
}

build_zlib() {
	local out=$WORK/zlib
	local key="$ZLIB_VERSION|$(pkgver clang-$LLVM)|$(pkgver wasi-libc)|$ZLIB_CFLAGS_WASI"
	if fresh zlib "$key" "$out/lib/libz.a"; then
		log "zlib up to date"
		return
	fi
	rm -rf "$out" "$WORK/build/zlib"
	mkdir -p "$out/include" "$out/lib" "$WORK/build/zlib"
	local f objs=()
	for f in adler32 crc32 deflate infback inffast inflate inftrees trees zutil \
		compress uncompr gzclose gzlib gzread gzwrite; do
		# shellcheck disable=SC2086
		$CC_WASI $ZLIB_CFLAGS_WASI $ZLIB_WARN -DZ_HAVE_UNISTD_H -D_LARGEFILE64_SOURCE=1 \
			-c "$ZLIB_SRC/$f.c" -o "$WORK/build/zlib/$f.o" &
		objs+=("$WORK/build/zlib/$f.o")
	done
	wait
	$AR_WASI rcs "$out/lib/libz.a" "${objs[@]}"
	cp "$ZLIB_SRC/zlib.h" "$ZLIB_SRC/zconf.h" "$out/include/"
	stamp zlib "$key"
}

build_python() {
	local bld=$WORK/build/python
	local key="$PY_VERSION|$(pkgver clang-$LLVM)|$(pkgver wasi-libc)|$(cat "$WORK/stamps/zlib")|$PY_OPT|$PY_EXTRA_CFLAGS|$PY_LDFLAGS_NODIST|${PY_CONFIGURE_ARGS[*]}"
	if fresh python-build "$key" "$bld/python.wasm"; then
		log "python.wasm up to date"
		return
	fi
	rm -rf "$bld"
	mkdir -p "$bld"
	(
		cd "$bld"
		export CONFIG_SITE=$PY_SRC/Tools/wasm/config.site-wasm32-wasi
		# Only zlib is offered to configure; every other library is absent
		# from the private sysroot, so its module is left out.
		mkdir -p pkgconfig
		printf 'Name: zlib\nDescription: zlib\nVersion: 1.2.13\nCflags: -I%s\nLibs: -L%s -lz\n' \
			"$WORK/zlib/include" "$WORK/zlib/lib" >pkgconfig/zlib.pc
		export PKG_CONFIG_PATH="" PKG_CONFIG_LIBDIR=$bld/pkgconfig
		"$PY_SRC/configure" -C "${PY_CONFIGURE_ARGS[@]}" --build="$("$PY_SRC/config.guess")" \
			CC="$CC_WASI" CPP="$CC_WASI -E" AR="$AR_WASI" RANLIB="$RANLIB_WASI" \
			OPT="$PY_OPT" CFLAGS="$PY_EXTRA_CFLAGS" >configure.log 2>&1 ||
			{ tail -40 configure.log >&2; die "CPython configure failed ($bld/configure.log)"; }
		make -j"$JOBS" EXTRA_CFLAGS="$PY_EXTRA_CFLAGS" LDFLAGS_NODIST="$PY_LDFLAGS_NODIST" >make.log 2>&1 ||
			{ tail -60 make.log >&2; die "CPython make failed ($bld/make.log)"; }
		grep -E '^(The necessary bits|Failed to build|Following modules built successfully)' -A4 make.log >&2 || true
	)
	stamp python-build "$key"
}

# link_python links python-sandboxd.wasm in CPython's build tree: the
# same objects as python.wasm, with scripts/wasm/python-main.c as the main,
# which can start from a snapshot of the interpreter's start-up
# (internal/wasm/snapshot.go). A step of its own, so that a change to the
# main relinks (seconds) instead of building CPython again.
link_python() {
	local bld=$WORK/build/python main=$SCRIPTS/wasm/python-main.c mk=$SCRIPTS/wasm/python-main.mk
	local key="$(cat "$WORK/stamps/python-build")|$(hash "$main" "$mk")"
	if fresh python-link "$key" "$bld/python-sandboxd.wasm"; then
		log "python-sandboxd.wasm up to date"
		return
	fi
	rm -f "$bld/python-sandboxd.wasm" "$bld/Programs/sandboxd-main.o"
	make -C "$bld" -f Makefile -f "$mk" SANDBOXD_MAIN="$main" \
		EXTRA_CFLAGS="$PY_EXTRA_CFLAGS" LDFLAGS_NODIST="$PY_LDFLAGS_NODIST" \
		python-sandboxd.wasm >"$bld/link.log" 2>&1 ||
		{ tail -30 "$bld/link.log" >&2; die "linking python-sandboxd.wasm failed ($bld/link.log)"; }
	stamp python-link "$key"
}

# stage_python builds $WORK/stage/python: the stripped binary and the
# precompiled stdlib, ready to move into place.
stage_python() {
	local st=$WORK/stage/python bld=$WORK/build/python
	local key="$(cat "$WORK/stamps/python-link")|${PY_STDLIB_DROP[*]}|$(pkgver python3.11)|$(echo "$PY_SITECUSTOMIZE" | sha256sum | cut -c1-16)"
	if fresh python-stage "$key" "$st/python.wasm" "$st/lib/python3.11/os.py"; then
		log "python stage up to date"
		return
	fi
	rm -rf "$st"
	mkdir -p "$st/lib"
	$STRIP_WASI -o "$st/python.wasm" "$bld/python-sandboxd.wasm"
	local lib=$st/lib/python3.11
	cp -a "$PY_SRC/Lib" "$lib"
	local d
	for d in "${PY_STDLIB_DROP[@]}"; do rm -rf "${lib:?}/$d"; done
	find "$lib" -name __pycache__ -prune -exec rm -rf {} +
	# The build's _sysconfigdata for wasm32-wasi, which sysconfig imports.
	cp "$bld"/build/lib.*/_sysconfigdata_*.py "$lib/"
	# The landmark getpath looks for to set sys.exec_prefix: an empty
	# directory, every extension module is built in.
	mkdir -p "$lib/lib-dynload"
	printf '%s\n' "$PY_SITECUSTOMIZE" >"$lib/sitecustomize.py"
	# unchecked-hash: the stdlib is mounted read-only and never changes
	# under a .pyc, so the interpreter need not stat the source to
	# validate it. Compiled by the host's 3.11: the same bytecode magic.
	"$BUILD_PYTHON" -m compileall -q -j "$JOBS" --invalidation-mode unchecked-hash \
		-x 'bad_coding|badsyntax|lib2to3/tests/data' "$lib" >/dev/null ||
		die "compileall of the stdlib failed"
	stamp python-stage "$key"
}

build_quickjs() {
	local bld=$WORK/build/quickjs driver=$SCRIPTS/wasm/qjs-driver.c
	local key="$QJS_VERSION|$(pkgver clang-$LLVM)|$(pkgver wasi-libc)|$QJS_CFLAGS|$QJS_LDFLAGS|$(hash "$driver")"
	if fresh quickjs "$key" "$WORK/stage/quickjs/qjs.wasm"; then
		log "qjs.wasm up to date"
		return
	fi
	rm -rf "$bld"
	mkdir -p "$bld/compat" "$WORK/stage/quickjs"
	# dtoa.c includes <setjmp.h> and uses nothing of it; wasi-libc has none.
	echo '/* empty: wasi-libc has no setjmp */' >"$bld/compat/setjmp.h"
	# Atomics.wait needs threads (pthread.h), which WASI preview1 has not:
	# compile quickjs.c without CONFIG_ATOMICS, as for Emscripten.
	perl -0pe 's/#if !defined\(EMSCRIPTEN\)\n#define CONFIG_ATOMICS/#if !defined(EMSCRIPTEN) && !defined(__wasi__)\n#define CONFIG_ATOMICS/' \
		"$QJS_SRC/quickjs.c" >"$bld/quickjs.c"
	grep -q 'defined(__wasi__)' "$bld/quickjs.c" || die "quickjs.c: CONFIG_ATOMICS guard not found; check the new version"
	local defs=(-DCONFIG_VERSION="\"$(cat "$QJS_SRC/VERSION")\"" -I"$QJS_SRC" -I"$bld/compat")
	local f src objs=()
	for f in quickjs libregexp libunicode cutils dtoa qjs-driver; do
		case $f in
		quickjs) src=$bld/quickjs.c ;;
		qjs-driver) src=$driver ;;
		*) src=$QJS_SRC/$f.c ;;
		esac
		# malloc_usable_size is in wasi-libc's <malloc.h>, which quickjs.c
		# includes on Linux only.
		# shellcheck disable=SC2086
		$CC_WASI $QJS_CFLAGS "${defs[@]}" -include malloc.h -c "$src" -o "$bld/$f.o" &
		objs+=("$bld/$f.o")
	done
	wait
	for f in "${objs[@]}"; do [[ -f $f ]] || die "QuickJS: $f was not compiled"; done
	# shellcheck disable=SC2086
	$CC_WASI $QJS_CFLAGS "${objs[@]}" $QJS_LDFLAGS -o "$bld/qjs.wasm"
	$STRIP_WASI -o "$WORK/stage/quickjs/qjs.wasm" "$bld/qjs.wasm"
	stamp quickjs "$key"
}

# install_dir NAME: replaces $DEST/NAME with the staged copy, by rename, so
# a reader sees the old tree or the new one, never a mix.
install_dir() {
	local name=$1 new=$DEST/.$1.new old=$DEST/.$1.old
	if [[ -d $DEST/$name && -f $DEST/.$name.key && $(cat "$DEST/.$name.key") == "$(cat "$WORK/stamps/$2")" ]]; then
		log "$DEST/$name up to date"
		return
	fi
	mkdir -p "$DEST"
	rm -rf "$new" "$old"
	cp -a "$WORK/stage/$name" "$new"
	chmod -R a+rX "$new"
	[[ -e $DEST/$name ]] && mv "$DEST/$name" "$old"
	mv "$new" "$DEST/$name"
	rm -rf "$old"
	cp "$WORK/stamps/$2" "$DEST/.$name.key"
	log "installed $DEST/$name"
}

write_versions() {
	local tmp=$DEST/.VERSIONS.new
	{
		echo "python=$(sed -n 's/^#define PY_VERSION[[:space:]]*"\(.*\)"/\1/p' "$PY_SRC/Include/patchlevel.h")"
		echo "python-debian=$PY_VERSION"
		echo "quickjs=$(tr - . <"$QJS_SRC/VERSION")"
		echo "quickjs-debian=$QJS_VERSION"
		echo "zlib-debian=$ZLIB_VERSION"
		echo "clang=$(pkgver clang-$LLVM)"
		echo "wasi-libc=$(pkgver wasi-libc)"
	} >"$tmp"
	mv "$tmp" "$DEST/VERSIONS"
	sed 's/^/  /' "$DEST/VERSIONS" >&2
}

# smoke runs both interpreters once with wazero's CLI (a Go module of this
# repository's go.mod), if go is available.
smoke() {
	if [[ ${SANDBOXD_WASM_SMOKE:-1} == 0 ]] || ! command -v go >/dev/null || [[ ! -f $REPO/go.mod ]]; then
		log "smoke test skipped"
		return
	fi
	local tmp out
	tmp=$(mktemp -d)
	echo 'print(sum(range(10)), end=" "); import zlib, json; print(len(zlib.compress(b"x" * 1000)) < 100)' >"$tmp/t.py"
	echo 'print(scriptArgs.length, [1, 2, 3].map(x => x * 2).join(","))' >"$tmp/t.js"
	# wazero's own cache keeps reruns from compiling python.wasm again.
	local wz=(go run github.com/tetratelabs/wazero/cmd/wazero run -cachedir "$WORK/wazero-cache")
	out=$(cd "$REPO" && "${wz[@]}" \
		-mount "$DEST/python/lib:/usr/local/lib:ro" -mount "$tmp:/workspace" \
		"$DEST/python/python.wasm" /workspace/t.py) || die "python.wasm smoke test failed"
	[[ $out == "45 True" ]] || die "python.wasm smoke test printed: $out"
	out=$(cd "$REPO" && "${wz[@]}" \
		-mount "$tmp:/workspace" "$DEST/quickjs/qjs.wasm" /workspace/t.js) || die "qjs.wasm smoke test failed"
	[[ $out == "1 2,4,6" ]] || die "qjs.wasm smoke test printed: $out"
	rm -rf "$tmp"
	log "smoke test passed"
}

main() {
	mkdir -p "$WORK/src" "$WORK/build" "$WORK/stage"
	step "toolchain (apt-get install)" install_deps
	step "sysroot" make_sysroot

	step "sources: bookworm (private apt)" apt_private bookworm mirror
	step "source: python3.11" fetch_source python3.11
	PY_SRC=$SRC PY_VERSION=$SRC_VERSION
	step "source: zlib" fetch_source zlib
	ZLIB_SRC=$SRC ZLIB_VERSION=$SRC_VERSION
	step "sources: trixie (private apt, quickjs only)" apt_private trixie trixie
	step "source: quickjs" fetch_source quickjs
	QJS_SRC=$SRC QJS_VERSION=$SRC_VERSION

	step "zlib for wasm32-wasi" build_zlib
	step "CPython for wasm32-wasi" build_python
	step "CPython: link with sandboxd's main" link_python
	step "CPython: strip, stdlib, compileall" stage_python
	step "QuickJS for wasm32-wasi" build_quickjs

	step "install python" install_dir python python-stage
	step "install quickjs" install_dir quickjs quickjs
	step "VERSIONS" write_versions
	step "smoke test" smoke
	log "done in $(since "$T0"): $DEST"
	ls -la "$DEST/python/python.wasm" "$DEST/quickjs/qjs.wasm" >&2
}

main "$@"
