#!/usr/bin/env bash
# Runs the POSIX filesystem test suite pjdfstest against blobmount on Azurite (in memory) and
# prints a table of assertions passed per test directory. Each directory runs in a fresh
# container on a fresh mount (as root, `-o allow_other`: pjdfstest switches users), with the
# current directory inside the mount, as pjdfstest wants.
#
#   scripts/pjdfstest.sh              every directory
#   scripts/pjdfstest.sh chmod chown  these directories only
#
# "passed" counts as prove does: a failing assertion marked TODO (pjdfstest's own note that
# Linux itself fails it) is not a failure; the TODO column says how many of those there were.
#
# pjdfstest's source comes from PJDFSTEST_SRC, else ../shared/pjdfstest beside the repository;
# without either the script says so and exits 2. It is built in a work directory (autoconf,
# automake and libtool are installed through apt when missing).
#
# Environment:
#   PJDFSTEST_SRC=DIR        pjdfstest's source
#   PJDFSTEST_BIN=PATH       the blobmount binary (default: a release build of this tree)
#   PJDFSTEST_MOUNT_ARGS=""  extra `blobmount mount` options
#   PJDFSTEST_KEEP=1         keep the work directory (prove's output per directory, logs)
#   PJDFSTEST_RCLONE=1       also run every directory on `rclone mount --vfs-cache-mode writes`
#                            (installed through apt) and print its column beside
# Everything it starts is stopped on exit (unmount, then kill by pid), also on Ctrl-C.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SRC=${PJDFSTEST_SRC:-$ROOT/../shared/pjdfstest}
BIN=${PJDFSTEST_BIN:-$ROOT/target/release/blobmount}
ACCOUNT=devstoreaccount1

say() { printf 'pjdfstest: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

[ -f "$SRC/pjdfstest.c" ] || {
    say "no pjdfstest source at $SRC (set PJDFSTEST_SRC)"
    exit 2
}
[ "$(id -u)" = 0 ] || die "pjdfstest switches users: run as root"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/blobmount-pjdfstest.XXXXXX")
MNT=$WORK/mnt
AZURITE_PID=
MOUNT_PID=

unmount_it() {
    cd "$ROOT"
    if is_mounted "$MNT"; then
        umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    fi
    stop_pid "$MOUNT_PID"
    MOUNT_PID=
}
cleanup() {
    set +e
    unmount_it
    stop_pid "$AZURITE_PID"
    if is_mounted "$MNT"; then
        say "warning: $MNT is still mounted; leaving $WORK in place"
    else
        [ -n "${PJDFSTEST_KEEP:-}" ] || rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


missing=
for tool in autoreconf automake libtoolize prove; do
    command -v "$tool" >/dev/null 2>&1 || missing=1
done
packages=
[ -z "$missing" ] || packages="autoconf automake libtool perl"
EXTRA_APT_PACKAGES=$packages bash scripts/install-test-deps.sh >&2

say "building pjdfstest in $WORK/pjdfstest"
cp -r "$SRC" "$WORK/pjdfstest"
(
    cd "$WORK/pjdfstest"
    autoreconf -ifs && ./configure && make
) >"$WORK/build.log" 2>&1 || {
    tail -n 30 "$WORK/build.log" >&2
    die "pjdfstest did not build"
}
if [ -z "${PJDFSTEST_BIN:-}" ]; then
    say "building blobmount (cargo build --release)"
    cargo build --release --quiet
fi
[ -x "$BIN" ] || die "$BIN missing"

start_azurite "$WORK"
ENDPOINT=http://127.0.0.1:$PORT/$ACCOUNT

if [ $# -gt 0 ]; then
    DIRS=("$@")
else
    DIRS=()
    for d in "$WORK/pjdfstest/tests"/*/; do DIRS+=("$(basename "$d")"); done
fi

mount_fresh() { # mount_fresh CONTAINER
    local url
    url=$(node scripts/demo-seed.mjs "$ENDPOINT" "$1" --sas racwdl 4)
    mkdir -p "$MNT"
    # shellcheck disable=SC2086 # word splitting of the extra options is wanted
    "$BIN" mount "$url" "$MNT" --foreground --log-level warn -o allow_other \
        ${PJDFSTEST_MOUNT_ARGS:-} </dev/null >>"$WORK/blobmount.log" 2>&1 &
    MOUNT_PID=$!
    wait_mounted "$WORK/blobmount.log"
}
wait_mounted() { # wait_mounted LOG: until $MNT is mounted by $MOUNT_PID (else LOG's tail)
    local i
    for ((i = 0; i < 200; i++)); do
        is_mounted "$MNT" && return 0
        kill -0 "$MOUNT_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$1" >&2
    die "the mount did not come up"
}

count() { # count FILE -> "assertions passed todo"
    # TAP of every test file: its plan "1..N", then "ok N ..." and "not ok N ..." lines.
    # Assertions a file planned but never reported (it died, or hit the timeout) fail.
    awk '
        /^1\.\.[0-9]+/ { split($0, a, "."); planned += a[3] }
        /^ok [0-9]+/ { ok++ }
        /^not ok [0-9]+/ { bad++; if (/# TODO/) todo++ }
        END { seen = ok + bad; print (planned > seen ? planned : seen), ok + todo, todo + 0 }
    ' "$1"
}
OUT=
run_dir() { # run_dir MOUNTER DIR N: prove's output goes to the file $OUT
    OUT=$WORK/prove-$1-$2.txt
    "$1" "pjd$3-$(echo "$2" | tr -c 'a-z0-9\n' '-' | cut -c1-40)"
    (cd "$MNT" && timeout 1800 prove -rv "$WORK/pjdfstest/tests/$2") >"$OUT" 2>&1 || true
    unmount_it
}

RCLONE=${PJDFSTEST_RCLONE:-0}
if [ "$RCLONE" = 1 ]; then
    command -v rclone >/dev/null 2>&1 || EXTRA_APT_PACKAGES=rclone bash scripts/install-test-deps.sh >&2
    command -v rclone >/dev/null 2>&1 || die "rclone could not be installed"
    printf '[pjd]\ntype = azureblob\n' >"$WORK/rclone.conf"
fi
mount_rclone() { # mount_rclone CONTAINER
    local url
    url=$(node scripts/demo-seed.mjs "$ENDPOINT" "$1" --sas racwdl 4)
    mkdir -p "$MNT"
    rclone --config "$WORK/rclone.conf" mount "pjd:$1" "$MNT" --azureblob-sas-url "$url" \
        --vfs-cache-mode writes --allow-other --cache-dir "$WORK/rclone-cache" \
        </dev/null >>"$WORK/rclone.log" 2>&1 &
    MOUNT_PID=$!
    wait_mounted "$WORK/rclone.log"
}

if [ "$RCLONE" = 1 ]; then
    printf '%s\n' "| directory | assertions | blobmount passed | (TODO) | failed | rclone passed |" \
        "| --- | ---: | ---: | ---: | ---: | ---: |" >"$WORK/table"
else
    printf '%s\n' "| directory | assertions | passed | (TODO) | failed |" "| --- | ---: | ---: | ---: | ---: |" >"$WORK/table"
fi
total=0 passed=0 todos=0 rpassed=0 n=0
for d in "${DIRS[@]}"; do
    [ -d "$WORK/pjdfstest/tests/$d" ] || die "no test directory $d"
    n=$((n + 1))
    say "$d"
    run_dir mount_fresh "$d" "$n"
    read -r all ok todo < <(count "$OUT")
    total=$((total + all)) passed=$((passed + ok)) todos=$((todos + todo))
    if [ "$RCLONE" = 1 ]; then
        say "$d (rclone)"
        run_dir mount_rclone "$d" "$((n + 100))"
        read -r _ rok _ < <(count "$OUT")
        rpassed=$((rpassed + rok))
        printf '| %s | %d | %d | %d | %d | %d |\n' "$d" "$all" "$ok" "$todo" $((all - ok)) "$rok" >>"$WORK/table"
    else
        printf '| %s | %d | %d | %d | %d |\n' "$d" "$all" "$ok" "$todo" $((all - ok)) >>"$WORK/table"
    fi
done
if [ "$RCLONE" = 1 ]; then
    printf '| all | %d | %d | %d | %d | %d |\n' "$total" "$passed" "$todos" $((total - passed)) "$rpassed" >>"$WORK/table"
else
    printf '| all | %d | %d | %d | %d |\n' "$total" "$passed" "$todos" $((total - passed)) >>"$WORK/table"
fi

echo
echo "pjdfstest on blobmount $("$BIN" --version 2>/dev/null | head -1 | awk '{ print $NF }'), Azurite in memory"
cat "$WORK/table"
if [ -n "${PJDFSTEST_KEEP:-}" ]; then
    say "kept $WORK (prove-MOUNTER-DIR.txt: each directory's output)"
fi
