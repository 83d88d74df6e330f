#!/bin/sh
# shmbroker kmod loader: makes shmbroker.ko available on this node's kernel,
# or explains (log line, status file, Kubernetes event) why the broker will
# run on the memfd backend instead. Runs as the DaemonSet's init container
# with CAP_SYS_MODULE and /lib/modules read-only; also usable by hand on a
# plain host.
#
# Order of attempts:
#   1. already loaded (/sys/module/shmbroker): keep it. It holds the node's
#      regions; it is never unloaded from here, even if its version differs.
#   2. modprobe shmbroker: a host install (DKMS, distribution package).
#   3. a module prebuilt into the image for exactly this kernel release.
#   4. build from the sources in the image against /lib/modules/KVER/build
#      (needs the node's kernel headers; see deploy/README.md).
#   5. none worked: exit 0 so the broker starts on memfd, and say so; or,
#      with SHMBROKER_REQUIRE_KMOD=true, exit 1 so the pod does not start.
#
# Every path and tool is overridable through the environment (tests run this
# script without touching the host's kernel).
set -u

KVER="${KVER:-$(uname -r)}"
MODULE=shmbroker
SYS_MODULE_DIR="${SHMBROKER_SYS_MODULE_DIR:-/sys/module}"
LIB_MODULES="${SHMBROKER_LIB_MODULES:-/lib/modules}"
PREBUILT_DIR="${SHMBROKER_PREBUILT_DIR:-/opt/shmbroker/kmod}"
SRC_DIR="${SHMBROKER_KMOD_SRC:-/opt/shmbroker/kmod-src}"
BUILD_DIR="${SHMBROKER_BUILD_DIR:-/tmp/shmbroker-kmod-build}"
STATUS_FILE="${SHMBROKER_STATUS_FILE:-/run/shmbroker/kmod-status}"
SA_DIR="${SHMBROKER_SA_DIR:-/var/run/secrets/kubernetes.io/serviceaccount}"
REQUIRE_KMOD="${SHMBROKER_REQUIRE_KMOD:-false}"
MODPROBE="${MODPROBE:-modprobe}"
INSMOD="${INSMOD:-insmod}"
MAKE="${MAKE:-make}"
CURL="${CURL:-curl}"

now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
log() { printf '%s shmbroker-kmod: %s\n' "$(now)" "$*"; }

json_str() {
	# JSON string body: escape backslash and quote, flatten control characters.
	printf '%s' "$1" | tr '\n\r\t' '   ' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'
}

write_status() { # module-state reason
	dir=$(dirname "$STATUS_FILE")
	[ -d "$dir" ] || return 0
	tmp="$STATUS_FILE.tmp.$$"
	{
		printf 'module=%s\n' "$1"
		printf 'kernel=%s\n' "$KVER"
		printf 'reason=%s\n' "$2"
		printf 'time=%s\n' "$(now)"
	} >"$tmp" 2>/dev/null && mv -f "$tmp" "$STATUS_FILE" 2>/dev/null || rm -f "$tmp" 2>/dev/null
	return 0
}

# A Kubernetes event on this pod (best effort: no API, no token, no curl -> skip).
post_event() { # type reason message
	[ -n "${KUBERNETES_SERVICE_HOST:-}" ] && [ -n "${KUBERNETES_SERVICE_PORT:-}" ] || return 0
	[ -n "${POD_NAME:-}" ] && [ -n "${POD_NAMESPACE:-}" ] || return 0
	[ -r "$SA_DIR/token" ] || return 0
	command -v "$CURL" >/dev/null 2>&1 || { log "curl not found: event not posted"; return 0; }
	host="$KUBERNETES_SERVICE_HOST"
	case "$host" in *:*) host="[$host]" ;; esac
	api="${SHMBROKER_API_URL:-https://$host:$KUBERNETES_SERVICE_PORT}"
	ts=$(now)
	body=$(printf '{"apiVersion":"v1","kind":"Event","metadata":{"generateName":"%s-kmod-","namespace":"%s"},"involvedObject":{"apiVersion":"v1","kind":"Pod","name":"%s","namespace":"%s","uid":"%s","fieldPath":"spec.initContainers{kmod}"},"type":"%s","reason":"%s","message":"%s","source":{"component":"shmbroker-kmod-loader","host":"%s"},"reportingComponent":"shmbroker.io/kmod-loader","reportingInstance":"%s","firstTimestamp":"%s","lastTimestamp":"%s","count":1}' \
		"$(json_str "$POD_NAME")" "$(json_str "$POD_NAMESPACE")" "$(json_str "$POD_NAME")" "$(json_str "$POD_NAMESPACE")" \
		"$(json_str "${POD_UID:-}")" "$1" "$2" "$(json_str "$3")" "$(json_str "${NODE_NAME:-}")" "$(json_str "${NODE_NAME:-}")" "$ts" "$ts")
	cacert=""
	[ -r "$SA_DIR/ca.crt" ] && cacert="--cacert $SA_DIR/ca.crt"
	# shellcheck disable=SC2086
	if ! out=$("$CURL" -sS --max-time 10 $cacert -X POST \
		-H "Authorization: Bearer $(cat "$SA_DIR/token")" -H 'Content-Type: application/json' \
		--data "$body" -o /dev/null -w '%{http_code}' \
		"$api/api/v1/namespaces/$POD_NAMESPACE/events" 2>&1); then
		log "could not post the Kubernetes event: $out"
	else
		case "$out" in 2*) ;; *) log "the API server refused the event: HTTP $out" ;; esac
	fi
	return 0
}

loaded() {
	msg="$1"
	log "$msg"
	write_status loaded "$msg"
	post_event Normal KmodLoaded "$msg"
	exit 0
}

image_version() {
	v=""
	[ -r "$SRC_DIR/dkms.conf" ] && v=$(sed -n 's/^PACKAGE_VERSION="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$SRC_DIR/dkms.conf" | head -n 1)
	printf '%s' "$v"
}

# 1. already loaded
if [ -d "$SYS_MODULE_DIR/$MODULE" ]; then
	have=""
	[ -r "$SYS_MODULE_DIR/$MODULE/version" ] && have=$(cat "$SYS_MODULE_DIR/$MODULE/version")
	want=$(image_version)
	if [ -n "$have" ] && [ -n "$want" ] && [ "$have" != "$want" ]; then
		log "WARNING: loaded $MODULE $have differs from this image's $want; keeping the loaded one (it holds the node's regions; see deploy/README.md, 'Upgrading the kernel module')"
	fi
	loaded "$MODULE already loaded on kernel $KVER${have:+ (version $have)}; regions it holds are kept"
fi

reasons=""
note() { reasons="${reasons:+$reasons; }$*"; }

# 2. host install
if [ -r "$LIB_MODULES/$KVER/modules.dep" ]; then
	if out=$("$MODPROBE" "$MODULE" 2>&1); then
		loaded "$MODULE loaded with modprobe from the host's $LIB_MODULES/$KVER"
	fi
	note "${out:-modprobe failed}"
else
	note "no $LIB_MODULES/$KVER/modules.dep (is /lib/modules mounted?)"
fi

# 3. prebuilt in the image
if [ -f "$PREBUILT_DIR/$KVER/$MODULE.ko" ]; then
	if out=$("$INSMOD" "$PREBUILT_DIR/$KVER/$MODULE.ko" 2>&1); then
		loaded "$MODULE loaded from the module prebuilt for $KVER"
	fi
	note "${out:-insmod of the prebuilt module failed}"
else
	note "no prebuilt module for $KVER in the image"
fi

# 4. build against the node's headers
if [ -f "$LIB_MODULES/$KVER/build/Makefile" ] && [ -f "$SRC_DIR/Makefile" ]; then
	rm -rf "$BUILD_DIR" && mkdir -p "$BUILD_DIR" && cp -R "$SRC_DIR/." "$BUILD_DIR/"
	log "building $MODULE for $KVER (headers in $LIB_MODULES/$KVER/build)"
	if out=$("$MAKE" -C "$LIB_MODULES/$KVER/build" M="$BUILD_DIR" modules 2>&1); then
		if out=$("$INSMOD" "$BUILD_DIR/$MODULE.ko" 2>&1); then
			loaded "$MODULE built and loaded for $KVER"
		fi
		note "${out:-insmod of the built module failed}"
	else
		note "build failed: $(printf '%s' "$out" | tail -n 3 | tr '\n' ' ')"
	fi
elif [ -L "$LIB_MODULES/$KVER/build" ] || [ -e "$LIB_MODULES/$KVER/build" ]; then
	note "kernel headers link $LIB_MODULES/$KVER/build does not resolve in this container (mount the node's /usr/src: components/kmod-build)"
else
	note "no kernel headers for $KVER"
fi

# 5. fall back
msg="could not load $MODULE on kernel $KVER: $reasons. The broker runs on the memfd backend: regions do not survive a broker restart and mapped regions cannot be revoked."
if [ "$REQUIRE_KMOD" = "true" ]; then
	log "ERROR: $msg SHMBROKER_REQUIRE_KMOD=true: failing."
	write_status failed "$reasons"
	post_event Warning KmodRequired "$msg SHMBROKER_REQUIRE_KMOD=true: the broker will not start."
	exit 1
fi
log "WARNING: $msg"
write_status unavailable "$reasons"
post_event Warning KmodUnavailable "$msg"
exit 0
