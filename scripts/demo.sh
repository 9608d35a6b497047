#!/usr/bin/env bash
# Try blobmount locally, against the Azurite emulator (nothing leaves this machine):
#
#   scripts/demo.sh [start] [--read-only] [MOUNTPOINT]
#                                          install what is missing, build, start Azurite, seed a
#                                          "demo" container and mount it, writable unless
#                                          --read-only (default mount point: $DEMO_DIR/mnt)
#   scripts/demo.sh status                 what is running
#   scripts/demo.sh stop                   unmount, stop blobmount and Azurite
#
# State lives in DEMO_DIR=${XDG_RUNTIME_DIR:-/tmp}/blobmount-demo: pid files, logs, the port,
# the SAS (demo.sas, private). Azurite keeps its data in memory: stopping it forgets the demo
# container.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DEMO_DIR=${DEMO_DIR:-${XDG_RUNTIME_DIR:-/tmp}/blobmount-demo}
ACCOUNT=devstoreaccount1
# The emulator's public, well-known development key (not a secret).
KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
BIN=$ROOT/target/release/blobmount

say() { printf 'demo: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# pid from a pid file, if that process is still alive.
live_pid() {
    local f=$1 pid
    [ -f "$f" ] || return 1
    pid=$(cat "$f")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Stops a process by the pid in file $1: SIGTERM, then SIGKILL after $2 seconds.
stop_pid() {
    local f=$1 grace=$2 name=$3 pid i
    if pid=$(live_pid "$f"); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name (pid $pid) did not stop; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $name (pid $pid)"
    fi
    rm -f "$f"
}

is_mounted() {
    # mountinfo escapes spaces as \040; demo mount points are plain paths.
    awk -v mp="$1" '$5 == mp { found = 1 } END { exit !found }' /proc/self/mountinfo
}

cmd_stop() {
    local mp
    mp=$(cat "$DEMO_DIR/mountpoint" 2>/dev/null || true)
    if [ -n "$mp" ] && is_mounted "$mp"; then
        if fusermount3 -u "$mp" 2>/dev/null || fusermount3 -uz "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null; then
            say "unmounted $mp"
        else
            say "could not unmount $mp"
        fi
    fi
    stop_pid "$DEMO_DIR/blobmount.pid" 10 blobmount
    stop_pid "$DEMO_DIR/azurite.pid" 10 Azurite
    rm -f "$DEMO_DIR/mountpoint" "$DEMO_DIR/port" "$DEMO_DIR/demo.sas"
}

cmd_status() {
    local pid
    if pid=$(live_pid "$DEMO_DIR/azurite.pid"); then
        say "Azurite: pid $pid, http://127.0.0.1:$(cat "$DEMO_DIR/port")/$ACCOUNT"
    else
        say "Azurite: not running"
    fi
    if pid=$(live_pid "$DEMO_DIR/blobmount.pid"); then
        say "blobmount: pid $pid, mounted on $(cat "$DEMO_DIR/mountpoint")"
    else
        say "blobmount: not running"
    fi
}

free_port() {
    node -e 'const s = require("net").createServer();
             s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# Waits until something listens on 127.0.0.1:$1 (at most $2 seconds).
wait_port() {
    local port=$1 secs=$2 i
    for ((i = 0; i < secs * 10; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# While starting: if the script fails, stop what it started.
on_start_exit() {
    if [ "$1" -ne 0 ]; then
        say "failed; cleaning up"
        cmd_stop
    fi
}

cmd_start() {
    local read_only=0
    if [ "${1:-}" = --read-only ]; then
        read_only=1
        shift
    fi
    local mp=${1:-$DEMO_DIR/mnt}
    mkdir -p "$DEMO_DIR"
    if live_pid "$DEMO_DIR/azurite.pid" >/dev/null || live_pid "$DEMO_DIR/blobmount.pid" >/dev/null; then
        die "a demo is already running (scripts/demo.sh status); stop it with: scripts/demo.sh stop"
    fi

    bash scripts/install-test-deps.sh
    say "building blobmount (cargo build --release: about 5 minutes the first time)"
    cargo build --release
    [ -x "$BIN" ] || die "$BIN missing after the build"

    local port
    port=$(free_port)
    say "starting Azurite on 127.0.0.1:$port (in memory; log: $DEMO_DIR/azurite.log)"
    (
        cd "$DEMO_DIR"
        exec "$ROOT/node_modules/.bin/azurite-blob" --inMemoryPersistence \
            --blobHost 127.0.0.1 --blobPort "$port" \
            --skipApiVersionCheck --loose --silent --disableTelemetry --disableProductStyleUrl \
            </dev/null >"$DEMO_DIR/azurite.log" 2>&1
    ) &
    echo $! >"$DEMO_DIR/azurite.pid"
    echo "$port" >"$DEMO_DIR/port"
    # From here on, a failure stops what was started.
    trap 'on_start_exit $?' EXIT
    if ! wait_port "$port" 30; then
        cat "$DEMO_DIR/azurite.log" >&2 || true
        false
    fi

    local endpoint=http://127.0.0.1:$port/$ACCOUNT
    node scripts/demo-seed.mjs "$endpoint" demo

    # The SAS is a password: in a private file, not on a command line (ps shows those).
    local perms=racwdl mode_text=writable sas_file=$DEMO_DIR/demo.sas
    if [ "$read_only" = 1 ]; then
        perms=rl
        mode_text=read-only
    fi
    (
        umask 077
        "$BIN" sas generate --account "$ACCOUNT" --key "$KEY" --container demo \
            --permissions "$perms" --expiry 8h >"$sas_file"
    )
    grep -q 'sig=' "$sas_file" || die "blobmount sas generate printed no token"

    mkdir -p "$mp"
    mp=$(cd "$mp" && pwd -P)
    echo "$mp" >"$DEMO_DIR/mountpoint"
    say "mounting on $mp (log: $DEMO_DIR/blobmount.log)"
    "$BIN" mount "$endpoint/demo" "$mp" --sas-file "$sas_file" --foreground \
        </dev/null >"$DEMO_DIR/blobmount.log" 2>&1 &
    echo $! >"$DEMO_DIR/blobmount.pid"
    local i pid
    pid=$(cat "$DEMO_DIR/blobmount.pid")
    for ((i = 0; i < 200; i++)); do
        is_mounted "$mp" && break
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$DEMO_DIR/blobmount.log" >&2 || true
            false
        fi
        sleep 0.1
    done
    if ! is_mounted "$mp"; then
        cat "$DEMO_DIR/blobmount.log" >&2 || true
        false
    fi
    trap - EXIT

    cat <<EOF

The demo container is mounted $mode_text on:

    $mp

Try:
    ls -lR '$mp'
    cat '$mp/README.txt'
    sha256sum '$mp/big/random-20MiB.bin'
$(if [ "$read_only" = 0 ]; then printf '%s\n' \
    "    cp -r /etc/ssl '$mp/' && ls -l '$mp/ssl'        (written to the container when cp returns)" \
    "    echo hello > '$mp/hello.txt'; mv '$mp/hello.txt' '$mp/hi.txt'"; fi)

The command line tool is $BIN; to call it as blobmount:

    export PATH="$ROOT/target/release:\$PATH"
    blobmount status                        every mount, its token's time left, pending writes
    blobmount sas inspect "\$(cat $sas_file)"  what the demo's SAS allows, until when
    blobmount --help

blobmount runs in the foreground as pid $pid (log: $DEMO_DIR/blobmount.log), with the SAS
in $sas_file; Azurite as pid $(cat "$DEMO_DIR/azurite.pid") on $endpoint.
Stop both and unmount with:

    scripts/demo.sh stop
EOF
}

case "${1:-start}" in
start)
    shift || true
    cmd_start "$@"
    ;;
stop) cmd_stop ;;
status) cmd_status ;;
-h | --help | help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
*)
    # scripts/demo.sh [--read-only] [MOUNTPOINT]
    if [ "$1" = --read-only ] || { [ "$#" -eq 1 ] && [[ "$1" != -* ]]; }; then
        cmd_start "$@"
    else
        die "usage: scripts/demo.sh [start] [--read-only] [MOUNTPOINT] | status | stop"
    fi
    ;;
esac
