#!/usr/bin/env bash
# Benchmark of blobmount against Azurite (its blobs on tmpfs or in memory), on loopback and
# through a link emulator (examples/link.rs: a round-trip delay and a bandwidth cap per
# connection, as to Azure), and of
# rclone mount on the same link where rclone is installed. It prints one table: each workload's
# wall time on loopback and through the link, its figure (MiB/s, files/s, round trips per file),
# the target it is held to, the daemon's CPU time and the requests it made, by operation (from
# the mount's metrics endpoint), and rclone's time.
#
# Workloads, in this order, each on a fresh mount where it says "cold":
#   read      cold and warm `cat` of one blob (BENCH_SIZE_MIB), then 4 `cat`s of 4 other blobs
#             at once (BENCH_READERS_MIB each), then fio random reads of 4 KiB and of 256 KiB
#             (where fio is installed; BENCH_FIO_SECS each)
#   write     `cp` of a local file of BENCH_WRITE_MIB (timed until cp returns: committed)
#   names     `ls -l` of a directory of BENCH_LS_ENTRIES entries, cold (after the directory's
#             own lookup); `stat` of 1,000 names
#             that do not exist, in one directory
#   tree      `tar x` of BENCH_TREE_FILES small files (about 13 KiB each, in 30 directories);
#             remount and drop the kernel's caches; `ls -lR`; reading them all back
#             (`tar c | cat >/dev/null`); `rm -r`
#   wb        (blobmount only, through the link; run before tree) `tar x` of that tree with --write-back,
#             timed until everything is committed (tar x, then the unmount), against rclone's
#             tar x until its uploads are done; then BENCH_KILLS (10) trials: the mount killed
#             with SIGKILL at a random moment (BENCH_SEED) of a `tar x` whose files are each
#             written by `cat` (tar --to-command) and logged once closed; remounted; every
#             logged file checked byte-exact against the service (direct Get Blob)
#   git       `git clone` of this repository onto the mount
#   resume    (blobmount only, through the link) `cp` of BENCH_RESUME_MIB whose mount is killed
#             with SIGKILL once 70% of it was sent; remount (the journal's unfinished content
#             goes to `.partial-`); the same `cp` again: the bytes it sends (metrics), and the
#             blob checked byte-exact against the local file
# and the raw baselines of the same link: one curl GET, 8 ranged curl GETs at once, and an SDK
# upload in 8 MiB Put Blocks (8 at once) + Put Block List.
#
# "Round trips per file" divide a workload's time by the files and by one round trip: the
# median time of a small Get Blob on a kept-alive connection, measured through the same link.
#
# Environment:
#   BENCH_LINK="10ms 100M"  the link: round trip, and bandwidth per connection (bytes per second;
#                           100M = 100 MiB/s); "" measures on loopback only
#   BENCH_LOOPBACK=1        also measure on loopback (0: the link only)
#   BENCH_WORKLOADS="read write names tree wb git resume"   which groups to run
#   BENCH_SIZE_MIB=1024 BENCH_READERS_MIB=256 BENCH_WRITE_MIB=1024 BENCH_LS_ENTRIES=10000
#   BENCH_TREE_FILES=1500 BENCH_FIO_SECS=10 BENCH_RESUME_MIB=2048
#   BENCH_LIMIT_SECS=600    longest `ls -l` (rclone's can take hours: noted failed beyond)
#   BENCH_MOUNT_ARGS=""     extra `blobmount mount` options (e.g. "--cache-size 2G")
#   BENCH_CACHE_BUDGET_MIB  cache budget for the RSS target (default: --cache-size in
#                           BENCH_MOUNT_ARGS, else the default shown by `blobmount mount --help`)
#   BENCH_BIN=PATH          the blobmount binary to measure (default: a release build of this
#                           tree, built first), e.g. an older build to compare with
#   BENCH_RCLONE=auto       1: install rclone (apt) and measure it; 0: never; auto: if installed
#   BENCH_FUSE_STUDY=1      also run the read and tree workloads on loopback once per setting of
#                           the kernel interface (BLOBMOUNT_FUSE_TUNING, src/fuse_tuning.rs)
#                           and print a second table
#   BENCH_STRICT=1          exit 1 if a target is missed
#   BENCH_LOG_LEVEL=warn    the mounts' --log-level; BENCH_KEEP=1 keeps the work directory (logs)
#   BENCH_AZURITE_NODE_FLAGS="--initial-old-space-size=4096"   node's options for Azurite: with
#                           V8's default heap limits its garbage collector takes about half of
#                           the CPU Azurite spends serving a read (perf), on the cores the mount,
#                           the link and rclone need too; Azure costs a client no CPU. "" for
#                           V8's defaults. Every row (raw, blobmount, rclone) meets the same one.
#   BENCH_AZURITE_STORE=tmpfs   where Azurite keeps the blobs: tmpfs (files in /dev/shm, when it
#                           is a writable tmpfs; else memory) or memory (--inMemoryPersistence).
#                           From files it spends about a third less CPU per GiB served
#                           (docs/PERFORMANCE.md), CPU taken from the same two cores otherwise.
#   BENCH_VM_MEMORY=hold    on a VM whose kernel hands freed memory back to the host at once
#                           (free page reporting, /sys/module/page_reporting), first touching a
#                           page costs the process that touches it a hypervisor fault: measured
#                           here, 2-3 s of CPU per GiB, charged to whichever process fills new
#                           page cache or buffers first (a cold read's mount, a `cp`'s kernel
#                           copy). hold (run as root): reporting paused for the run and
#                           BENCH_PRETOUCH_GIB (what is available less 4 GiB, at most 16) of
#                           memory touched once first, restored on exit; keep: left as it is
#                           (the table says which).
# Each label (loopback, the link, rclone) is measured on a fresh Azurite, seeded alike: one that
# has served the labels before is slower (it keeps everything in memory).
# Everything it starts is stopped on exit (unmount, then kill by pid), also on Ctrl-C.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
READERS_MIB=${BENCH_READERS_MIB:-256}
WRITE_MIB=${BENCH_WRITE_MIB:-1024}
LS_ENTRIES=${BENCH_LS_ENTRIES:-10000}
TREE_FILES=${BENCH_TREE_FILES:-1500}
FIO_SECS=${BENCH_FIO_SECS:-10}
LIMIT=${BENCH_LIMIT_SECS:-600}
RESUME_MIB=${BENCH_RESUME_MIB:-2048}
WORKLOADS=" ${BENCH_WORKLOADS:-read write names tree wb git resume} "
LINK=${BENCH_LINK-10ms 100M}
LOOPBACK=${BENCH_LOOPBACK:-1}
RCLONE=${BENCH_RCLONE:-auto}
BIN=${BENCH_BIN:-$ROOT/target/release/blobmount}
ACCOUNT=devstoreaccount1
CONTAINER=bench
MIB=1048576

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
wants() { [[ $WORKLOADS == *" $1 "* ]]; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/blobmount-bench.XXXXXX")
# Azurite's store on tmpfs (see BENCH_AZURITE_STORE): a directory per fresh service, removed
# with it.
AZ_STORE=
AZ_STORES=0
if [ "${BENCH_AZURITE_STORE:-tmpfs}" = tmpfs ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] &&
    [ -w /dev/shm ]; then
    AZ_STORE=$(mktemp -d /dev/shm/blobmount-bench-az.XXXXXX)
fi
MNT=$WORK/mnt
AZURITE_PID=
MOUNT_PID=
LINK_PID=
REPORTING=/sys/module/page_reporting/parameters/page_reporting_order
REPORTING_WAS=



unmount_it() {
    local i
    if is_mounted "$MNT"; then
        fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
    fi
    stop_pid "$MOUNT_PID"
    MOUNT_PID=
    # rclone's mount can outlive its process for a moment: the next mount needs the directory.
    for ((i = 0; i < 100; i++)); do
        is_mounted "$MNT" || return 0
        sleep 0.1
    done
    umount -l "$MNT" 2>/dev/null || true
}

cleanup() {
    set +e
    if [ -z "${TABLE_DONE:-}" ] && [ -s "$WORK/results" ]; then
        echo "bench: the run stopped early; what it measured (label,workload seconds cpu requests):"
        cat "$WORK/results"
    fi
    unmount_it
    stop_pid "$LINK_PID"
    stop_pid "$AZURITE_PID"
    [ -z "$AZ_STORE" ] || rm -rf "$AZ_STORE"
    [ -z "$REPORTING_WAS" ] || echo "$REPORTING_WAS" >"$REPORTING" 2>/dev/null ||
        say "warning: could not restore $REPORTING to $REPORTING_WAS"
    if is_mounted "$MNT"; then
        say "warning: $MNT is still mounted; leaving $WORK in place"
    else
        [ -n "${BENCH_KEEP:-}" ] || rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }
# elapsed SINCE: seconds since then, 3 decimals
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
# calc EXPR NAME=VALUE…: awk arithmetic to 2 decimals, e.g. calc 'b / s' b=1 s=2
calc() {
    local expr=$1 args=() a
    shift
    for a in "$@"; do args+=(-v "$a"); done
    awk "${args[@]}" "BEGIN { printf \"%.2f\", ($expr) }"
}
drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
}

# --- setup ------------------------------------------------------------------------
packages=curl
wants read && packages="$packages fio"
[ "$RCLONE" = 1 ] && packages="$packages rclone"
EXTRA_APT_PACKAGES=$packages bash scripts/install-test-deps.sh || say "warning: could not install $packages"
command -v fio >/dev/null 2>&1 || say "fio not found: the random-read rows are skipped"
if [ -z "${BENCH_BIN:-}" ]; then
    say "building (cargo build --release)"
    cargo build --release --quiet
fi
[ -x "$BIN" ] || die "$BIN missing"
if [ -n "$LINK" ]; then
    say "building the link emulator (cargo build --release --example link)"
    cargo build --release --quiet --example link
fi

# --- the machine's memory ---------------------------------------------------------------------
# See BENCH_VM_MEMORY. Reporting covers free blocks of page_reporting_order and up: the number
# of orders (one past the largest) covers none. The memory touched goes back to the free lists
# still backed by the host, and stays so while reporting is paused (measured: a cold read then
# costs the mount 0.6 s of CPU per GiB, against 2.6 s when it met reported pages).
VM_MEMORY="not a VM that reports free memory"
if [ -w "$REPORTING" ]; then
    VM_MEMORY="free page reporting left on (BENCH_VM_MEMORY=keep): first touches cost hypervisor faults"
    if [ "${BENCH_VM_MEMORY:-hold}" = hold ]; then
        orders=$(awk '/^Free pages count per migrate type at order/ { print NF - 8; exit }' /proc/pagetypeinfo 2>/dev/null || true)
        was=$(cat "$REPORTING")
        if [ -n "$orders" ] && echo "$orders" >"$REPORTING" 2>/dev/null; then
            REPORTING_WAS=$was
            # What the run fills: Azurite's store and memory, the local files, the page cache
            # of reads and writes, the mounts. All that the machine can spare, up to 16 GiB.
            avail=$(awk '/^MemAvailable:/ { print int($2 / 1048576) }' /proc/meminfo)
            gib=${BENCH_PRETOUCH_GIB:-$((avail - 4 < 16 ? avail - 4 : 16))}
            say "pausing the VM's free page reporting (order $was -> $orders) and touching $gib GiB once"
            # Buffers of 1 GiB, filled (so touched) and held until the process ends.
            node -e 'const keep = []; for (let i = 0; i < +process.argv[1]; i++) keep.push(Buffer.alloc(1 << 30, 1))' "$gib" ||
                say "warning: touched less than $gib GiB"
            VM_MEMORY="free page reporting paused for the run (order $was -> $orders, restored), $gib GiB touched first"
        else
            say "warning: could not pause the VM's free page reporting: first touches cost hypervisor faults"
        fi
    fi
fi

# --- the link ---------------------------------------------------------------------------
LINK_URL= LINK_TEXT=
start_link() {
    read -r LINK_RTT LINK_RATE <<<"$LINK"
    LINK_RATE=${LINK_RATE:-100M}
    "$ROOT/target/release/examples/link" --upstream "127.0.0.1:$PORT" --rtt "$LINK_RTT" \
        --conn-rate "$LINK_RATE" </dev/null >"$WORK/link.out" 2>&1 &
    LINK_PID=$!
    for ((i = 0; i < 100; i++)); do
        grep -q '^listening on' "$WORK/link.out" 2>/dev/null && break
        kill -0 "$LINK_PID" 2>/dev/null || { cat "$WORK/link.out" >&2; die "the link exited"; }
        sleep 0.1
    done
    LPORT=$(awk '/^listening on/ { n = split($3, a, ":"); print a[n] }' "$WORK/link.out")
    [ -n "$LPORT" ] || die "the link did not start"
    # The SAS signs no host or port: the same URL through the link's port.
    LINK_URL=${SAS_URL/127.0.0.1:$PORT\//127.0.0.1:$LPORT\/}
    LINK_TEXT="a link of $LINK_RTT round trip and $LINK_RATE/s per connection"
    say "link on 127.0.0.1:$LPORT: $LINK_TEXT"
}
# Stops the link; LINK_CONNS and LINK_PEAK are what it served (connections opened, at most open).
stop_link() {
    stop_pid "$LINK_PID"
    LINK_PID=
    read -r _ LINK_CONNS _ LINK_PEAK _ _ _ _ < <(grep '^connections' "$WORK/link.out" || echo "connections ? peak_open ? x x x x")
}

if wants tree || wants wb; then
    say "making a tree of $TREE_FILES small files"
    mkdir -p "$WORK/tree-src/tree"
    for ((i = 0; i < TREE_FILES; i++)); do
        d=$WORK/tree-src/tree/d$((i % 30))
        [ -d "$d" ] || mkdir "$d"
        head -c $((1024 + (i * 7919) % 24576)) /dev/urandom >"$d/f$i.txt"
    done
    tar cf "$WORK/tree.tar" -C "$WORK/tree-src" tree
    TREE_BYTES=$(find "$WORK/tree-src/tree" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
    rm -rf "$WORK/tree-src"
fi
if wants write; then
    head -c $((WRITE_MIB * MIB)) /dev/urandom >"$WORK/write.bin"
fi
if wants resume; then
    head -c $((RESUME_MIB * MIB)) /dev/urandom >"$WORK/resume.bin"
fi

blob_url() { # blob_url CONTAINER_SAS_URL NAME
    echo "${1%%\?*}/$2?${1#*\?}"
}

# --- the service -----------------------------------------------------------------------------
# Azurite (BENCH_AZURITE_STORE), seeded, and the link in front of it. Each label (loopback, the link,
# rclone) gets a fresh one, seeded alike: Azurite keeps everything in memory and slows down as
# it fills (its listings and reads, measured, and so does its garbage collector), so a label
# measured after others would meet a slower service than the first.
seed() { node scripts/demo-seed.mjs "$ENDPOINT" "$CONTAINER" "$@"; }
SERVICE_USED=
fresh_service() {
    [ -z "$LINK_PID" ] || stop_link
    [ -z "$AZURITE_PID" ] || stop_pid "$AZURITE_PID"
    AZURITE_PID=
    local location=
    if [ -n "$AZ_STORE" ]; then
        rm -rf "$AZ_STORE"/*
        AZ_STORES=$((AZ_STORES + 1))
        location=$AZ_STORE/$AZ_STORES
    fi
    AZURITE_LOCATION=$location \
        AZURITE_NODE_FLAGS=${BENCH_AZURITE_NODE_FLAGS---initial-old-space-size=4096} start_azurite "$WORK"
    ENDPOINT=http://127.0.0.1:$PORT/$ACCOUNT
    say "seeding the container (direct, not through the link)"
    seed --random rtt.bin 100
    if wants read; then
        seed --random big.bin $((SIZE_MIB * MIB))
        for i in 0 1 2 3; do seed --random "r$i.bin" $((READERS_MIB * MIB)); done
        seed --random rnd4k.bin $((READERS_MIB * MIB))
        seed --random rnd256k.bin $((READERS_MIB * MIB))
    fi
    if wants names; then
        seed --many "dir/f" "$LS_ENTRIES"
        seed --many "sparse/f" 3
    fi
    # A container SAS from the SDK: an independent signer, for curl and the mount.
    SAS_URL=$(seed --sas racwdl 4)
    [ -z "$LINK" ] || start_link
    # Azurite's first read of a blob just uploaded costs it about twice the CPU of later reads
    # (measured: 3.4 s against 1.7-2.0 s of its CPU per GiB), and on two cores that CPU is the
    # ceiling: whichever workload came first would pay for it. Each big blob is read once, on
    # loopback and unmeasured, so every workload meets the same, settled Azurite.
    if wants read; then
        say "warming Azurite up: one direct read of each big blob"
        for b in big.bin r0.bin r1.bin r2.bin r3.bin rnd4k.bin rnd256k.bin; do
            curl -sS --noproxy '*' -o /dev/null "$(blob_url "$SAS_URL" "$b")"
        done
    fi
    SERVICE_USED=
}
# A label about to be measured: on a fresh service, unless nothing has used this one yet.
fresh_for_label() {
    [ -z "$SERVICE_USED" ] || fresh_service
    SERVICE_USED=1
}

fresh_service

# --- raw baselines ----------------------------------------------------------------------------
declare -A T REQS CPU AZCPU LNCPU
# One round trip: the median time of a 100-byte Get Blob on a kept-alive connection.
round_trip() {
    local url args=() i
    url=$(blob_url "$1" rtt.bin)
    for ((i = 0; i < 21; i++)); do args+=(-o /dev/null "$url"); done
    curl -sS --noproxy '*' -w '%{time_total}\n' "${args[@]}" | tail -n 20 | sort -n | sed -n 10p
}
curl_get() { # curl_get URL BYTES -> seconds
    local out code bytes secs
    out=$(curl -sS --noproxy '*' -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "$1")
    read -r code bytes secs <<<"$out"
    [ "$code" = 200 ] || [ "$code" = 206 ] || die "curl GET: HTTP $code"
    [ "$bytes" = "$2" ] || die "curl GET: got $bytes bytes, wanted $2"
    echo "$secs"
}
parallel_get() { # parallel_get URL SIZE N -> seconds for N ranged GETs at once
    local t0 i part=$(($2 / $3)) pids=()
    t0=$(now)
    for ((i = 0; i < $3; i++)); do
        curl -sS --noproxy '*' -o /dev/null -r "$((i * part))-$(((i + 1) * part - 1))" "$1" &
        pids+=($!)
    done
    wait "${pids[@]}"
    elapsed "$t0"
}
raw_baselines() { # raw_baselines LABEL SAS_URL
    local label=$1 url=$2 ep
    T[$label,rtt]=$(round_trip "$url")
    if wants read; then
        say "$label: curl GET of big.bin, one connection"
        T[$label,curl]=$(curl_get "$(blob_url "$url" big.bin)" $((SIZE_MIB * MIB)))
        say "$label: 8 ranged curl GETs at once"
        T[$label,curl8]=$(parallel_get "$(blob_url "$url" big.bin)" $((SIZE_MIB * MIB)) 8)
        # What this machine gives at most (Azurite, the link and curl share its cores).
        say "$label: 16 ranged curl GETs at once"
        T[$label,curl16]=$(parallel_get "$(blob_url "$url" big.bin)" $((SIZE_MIB * MIB)) 16)
    fi
    if wants write; then
        say "$label: SDK upload, 8 Put Blocks at once"
        ep=${url%%\?*}
        ep=${ep%/*}
        T[$label,rawput]=$(node scripts/demo-seed.mjs "$ep" "$CONTAINER" --raw-put raw.bin $((WRITE_MIB * MIB)) 8)
    fi
    for k in rtt curl curl8 curl16 rawput; do echo "$label,$k ${T[$label,$k]:-}" >>"$WORK/results"; done
}

# --- one mount, all workloads ---------------------------------------------------------
MPORT=
mount_blobmount() { # mount_blobmount SAS_URL
    # shellcheck disable=SC2206 # word splitting of the extra options is wanted
    local extra=(${BENCH_MOUNT_ARGS:-} ${MOUNT_EXTRA:-})
    mkdir -p "$MNT"
    ! is_mounted "$MNT" || die "$MNT is still mounted"
    MPORT=$(free_port)
    BLOBMOUNT_FUSE_TUNING=${FUSE_TUNING:-} "$BIN" mount "$1" "$MNT" --foreground --log-level "${BENCH_LOG_LEVEL:-warn}" \
        --metrics-addr "127.0.0.1:$MPORT" "${extra[@]}" </dev/null >>"$WORK/blobmount.log" 2>&1 &
    MOUNT_PID=$!
    wait_mounted
}
mount_rclone() { # mount_rclone SAS_URL
    mkdir -p "$MNT"
    ! is_mounted "$MNT" || die "$MNT is still mounted"
    MPORT=
    RCLONE_CONFIG=$WORK/rclone.conf rclone mount "bench:$CONTAINER" "$MNT" --azureblob-sas-url "$1" \
        --vfs-cache-mode writes --cache-dir "$WORK/rclone-cache" --dir-cache-time 1s \
        </dev/null >>"$WORK/rclone.log" 2>&1 &
    MOUNT_PID=$!
    wait_mounted
}
wait_mounted() {
    local i
    for ((i = 0; i < 200; i++)); do
        is_mounted "$MNT" && return 0
        kill -0 "$MOUNT_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$WORK"/*.log >&2
    die "the mount did not come up"
}

# Requests by operation so far, from the mount's metrics: "op count" lines.
requests_now() {
    [ -n "$MPORT" ] || return 0
    { curl -sS --noproxy '*' "http://127.0.0.1:$MPORT/metrics" || true; } |
        awk -F'[{}",= ]+' '/^blobmount_requests_total\{/ { for (i = 2; i < NF; i++) if ($i == "op") n[$(i + 1)] += $NF }
            END { for (o in n) print o, n[o] }' | sort
}
cpu_of() { # cpu_of PID: its user + system CPU seconds so far (0 when it is not running)
    if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then
        awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"
    else
        echo 0
    fi
}
cpu_now() { cpu_of "$MOUNT_PID"; }
metric() { # metric NAME: its value on the mount's metrics endpoint now (0 when absent)
    { curl -sS --noproxy '*' "http://127.0.0.1:$MPORT/metrics" 2>/dev/null || true; } |
        awk -v n="$1" '$1 == n { v = $2 } END { printf "%d", v + 0 }'
}
LABEL=
T0= CPU0= AZ0= LN0=
begin() {
    requests_now >"$WORK/req.before"
    CPU0=$(cpu_now) AZ0=$(cpu_of "$AZURITE_PID") LN0=$(cpu_of "$LINK_PID")
    T0=$(now)
}
end() { # end NAME: records the workload's time, requests ("op=n …") and daemon CPU seconds
    T[$LABEL,$1]=$(elapsed "$T0")
    requests_now >"$WORK/req.after"
    REQS[$LABEL,$1]=$(join -a 2 -e 0 -o 0,1.2,2.2 "$WORK/req.before" "$WORK/req.after" |
        awk '$3 - $2 > 0 { printf "%s%s=%d", (n++ ? " " : ""), $1, $3 - $2 }')
    CPU[$LABEL,$1]=$(calc 'b - a' a="$CPU0" b="$(cpu_now)")
    # Who else used the machine meanwhile: the service, and the link.
    AZCPU[$LABEL,$1]=$(calc 'b - a' a="$AZ0" b="$(cpu_of "$AZURITE_PID")")
    LNCPU[$LABEL,$1]=$(calc 'b - a' a="$LN0" b="$(cpu_of "$LINK_PID")")
    echo "$LABEL,$1 ${T[$LABEL,$1]} ${CPU[$LABEL,$1]} ${REQS[$LABEL,$1]}" >>"$WORK/results"
}
# rclone uploads after close: before its mount goes, wait until the service has every file.
wait_uploaded() { # wait_uploaded SAS_URL PREFIX COUNT
    local list n i
    list="${1%%\?*}?${1#*\?}&restype=container&comp=list&maxresults=5000&prefix=$2"
    for ((i = 0; i < 600; i++)); do
        n=$(curl -sS --noproxy '*' "$list" | { grep -o '<Blob>' || true; } | wc -l)
        [ "$n" -ge "$3" ] && return 0
        sleep 1
    done
    die "rclone did not upload $2 within 10 minutes ($n of $3 files)"
}
fio_rate() { # fio_rate FILE BS -> MiB/s of random reads
    fio --name=r --filename="$1" --rw=randread --bs="$2" --ioengine=psync --direct=0 \
        --fadvise_hint=1 --time_based --runtime="$FIO_SECS" --invalidate=1 \
        --output-format=terse --terse-version=3 2>/dev/null | awk -F';' '{ printf "%.2f", $7 / 1024 }'
}

# Unmounts a write-back mount and waits (up to 10 minutes) for its daemon to exit on its own:
# its shutdown commits what is pending (stop_pid would SIGKILL it after 10 s).
unmount_committing() {
    local i
    fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    for ((i = 0; i < 6000; i++)); do
        kill -0 "$MOUNT_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$MOUNT_PID" 2>/dev/null && die "the write-back mount did not finish its commits in 10 minutes"
    wait "$MOUNT_PID" 2>/dev/null || true
    MOUNT_PID=
}
# The kill -9 trials of the write-back workload: the tree extracted by tar, each file written
# by `cat` (tar --to-command) and its name logged once cat has exited, i.e. once its close
# returned; the mount killed at a random moment; remounted; every logged file is compared,
# byte for byte, with the blob the service holds (direct Get Blob). BENCH_KILLS trials.
kill_trials() { # kill_trials SAS_URL
    local url=$1 k at r tar_pid closed exact bad partial unfinished i dest
    rm -rf "$WORK/tree-check"
    mkdir -p "$WORK/tree-check"
    tar xf "$WORK/tree.tar" -C "$WORK/tree-check"
    cat >"$WORK/put-one.sh" <<'ONE'
#!/bin/sh
# tar --to-command: the member on stdin into the mount; its name logged once cat has closed it.
f="$DEST/$TAR_FILENAME"
mkdir -p "${f%/*}" && cat >"$f" && echo "$TAR_FILENAME" >>"$CLOSED_LOG"
ONE
    chmod +x "$WORK/put-one.sh"
    RANDOM=${BENCH_SEED:-11}
    KILL_CLOSED=0 KILL_EXACT=0 KILL_PARTIAL=0 KILL_MIDRUN=0
    for ((k = 1; k <= ${BENCH_KILLS:-10}; k++)); do
        BENCH_LOG_LEVEL=info MOUNT_EXTRA=--write-back mount_blobmount "$url"
        dest=$MNT/kill-$k
        mkdir "$dest"
        : >"$WORK/closed-$k"
        # A moment within tar's run: 1 s to the time the timed tar x took with --write-back.
        # (Drawn here: a command substitution would reseed RANDOM.)
        r=$RANDOM
        at=$(calc '1 + r / 32767 * (t - 1)' r="$r" t="${T[$LABEL,tarwb_close]}")
        # In a process group of its own, so that tar and every cat it runs can be killed.
        DEST=$dest CLOSED_LOG=$WORK/closed-$k setsid tar xf "$WORK/tree.tar" --to-command="$WORK/put-one.sh" 2>/dev/null &
        tar_pid=$!
        sleep "$at"
        kill -0 "$tar_pid" 2>/dev/null && KILL_MIDRUN=$((KILL_MIDRUN + 1))
        kill -KILL "$MOUNT_PID"
        wait "$MOUNT_PID" 2>/dev/null || true
        MOUNT_PID=
        # tar and the cat it runs are killed before the dead mount is detached: nothing of
        # theirs can land in the directory under it afterwards.
        kill -KILL -- -"$tar_pid" 2>/dev/null || kill -KILL "$tar_pid" 2>/dev/null || true
        wait "$tar_pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            pgrep -g "$tar_pid" >/dev/null 2>&1 || break
            sleep 0.1
        done
        umount -l "$MNT" 2>/dev/null || true
        closed=$(wc -l <"$WORK/closed-$k")
        say "$LABEL: kill $k at ${at}s: tar had closed $closed files; remounting"
        before=$(grep -c ' 0 to go' "$WORK/blobmount.log" || true)
        BENCH_LOG_LEVEL=info MOUNT_EXTRA=--write-back mount_blobmount "$url"
        # The resume is done when its summary says nothing is left to go.
        for ((i = 0; i < 1200; i++)); do
            [ "$(grep -c ' 0 to go' "$WORK/blobmount.log" || true)" -gt "$before" ] && break
            sleep 0.1
        done
        [ "$(grep -c ' 0 to go' "$WORK/blobmount.log" || true)" -gt "$before" ] || [ "$closed" = 0 ] ||
            die "kill $k: the remount did not finish resuming the journal in 2 minutes"
        # Everything the service holds under the trial's directory, fetched directly (the SDK).
        rm -rf "$WORK/got-$k"
        seed --download "kill-$k/" "$WORK/got-$k" >"$WORK/names-$k" || die "kill $k: cannot download kill-$k/"
        exact=0 bad=0
        while read -r f; do
            if cmp -s "$WORK/got-$k/$f" "$WORK/tree-check/$f"; then exact=$((exact + 1)); else
                bad=$((bad + 1))
                say "$LABEL: kill $k: $f was closed but the service does not hold it byte-exact"
            fi
        done <"$WORK/closed-$k"
        partial=$(grep -c '\.partial-' "$WORK/names-$k" || true)
        unfinished=$(($(grep -vc '\.partial-\|\.conflict-' "$WORK/names-$k" || true) - closed))
        say "$LABEL: kill $k: $exact of $closed closed files byte-exact, $bad not; $partial unfinished kept as .partial-; $unfinished more committed (closed after the log line)"
        KILL_CLOSED=$((KILL_CLOSED + closed)) KILL_EXACT=$((KILL_EXACT + exact)) KILL_PARTIAL=$((KILL_PARTIAL + partial))
        echo "$LABEL,kill$k at=$at closed=$closed exact=$exact bad=$bad partial=$partial" >>"$WORK/results"
        rm -rf "$WORK/got-$k"
        unmount_committing
    done
    T[$LABEL,kills]=${BENCH_KILLS:-10}
}
# `tar x` with --write-back, timed until everything is committed (tar x, then the unmount,
# whose shutdown commits what is still pending); then the kill -9 trials.
write_back_workload() { # write_back_workload SAS_URL
    local url=$1 t_tar n
    MOUNT_EXTRA="--write-back" mount_blobmount "$url"
    say "$LABEL: tar x of $TREE_FILES files with --write-back, until committed"
    begin
    t_tar=$T0
    mkdir "$MNT/wb-$LABEL"
    tar xf "$WORK/tree.tar" -C "$MNT/wb-$LABEL"
    T[$LABEL,tarwb_close]=$(elapsed "$t_tar")
    # Requests until the unmount (the endpoint goes with the daemon): the shutdown's commits
    # are not in them.
    end tarwb
    unmount_committing
    T[$LABEL,tarwb]=$(elapsed "$t_tar")
    echo "$LABEL,tarwb ${T[$LABEL,tarwb]} close ${T[$LABEL,tarwb_close]}" >>"$WORK/results"
    n=$(seed --download "wb-$LABEL/" "$WORK/got-wb" | wc -l)
    rm -rf "$WORK/got-wb"
    [ "$n" = "$TREE_FILES" ] || die "after the write-back mount's unmount the service has $n of $TREE_FILES files"
    kill_trials "$url"
}

workloads() { # workloads LABEL MOUNT_FUNCTION SAS_URL
    LABEL=$1
    local mount=$2 url=$3 n pids t_tar
    if wants read; then
        drop_caches
        $mount "$url"
        say "$LABEL: cold read"
        begin
        cat "$MNT/big.bin" >/dev/null
        end cold
        [ "$(stat -c %s "$MNT/big.bin")" = $((SIZE_MIB * MIB)) ] || die "big.bin has the wrong size"
        say "$LABEL: warm read"
        begin
        cat "$MNT/big.bin" >/dev/null
        end warm
        [ -z "$MPORT" ] || T[$LABEL,hwm]=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$MOUNT_PID/status")
        say "$LABEL: 4 readers"
        begin
        pids=()
        for i in 0 1 2 3; do
            cat "$MNT/r$i.bin" >/dev/null &
            pids+=($!)
        done
        wait "${pids[@]}"
        end readers
        if [ -z "${NO_FIO:-}" ] && command -v fio >/dev/null 2>&1; then
            say "$LABEL: fio random reads"
            begin
            T[$LABEL,rand4k_rate]=$(fio_rate "$MNT/rnd4k.bin" 4k)
            end rand4k
            begin
            T[$LABEL,rand256k_rate]=$(fio_rate "$MNT/rnd256k.bin" 256k)
            end rand256k
            echo "$LABEL,fio MiB/s 4K ${T[$LABEL,rand4k_rate]} 256K ${T[$LABEL,rand256k_rate]}" >>"$WORK/results"
        fi
        unmount_it
    fi
    if wants write; then
        $mount "$url"
        say "$LABEL: write"
        begin
        cp "$WORK/write.bin" "$MNT/write-$LABEL.bin"
        end write
        [ -n "$MPORT" ] || wait_uploaded "$url" "write-$LABEL.bin" 1
        [ "$(stat -c %s "$MNT/write-$LABEL.bin")" = $((WRITE_MIB * MIB)) ] || die "the written file has the wrong size"
        # Azurite keeps everything in memory: what was written (and the raw baseline's
        # upload) goes, so the service is not slower for the workloads after.
        rm -f "$MNT/write-$LABEL.bin" "$MNT/raw.bin"
        unmount_it
    fi
    if wants names; then
        $mount "$url"
        say "$LABEL: ls -l of $LS_ENTRIES entries"
        stat "$MNT/dir" >/dev/null # its own lookup, before: the listing is what is counted
        begin
        # Limited: with --dir-cache-time 1s, rclone lists the directory again for each entry
        # once a listing takes longer than that (hours for 10,000 entries); it is noted failed.
        n=$(timeout "$LIMIT" ls -l "$MNT/dir" | wc -l) || T[$LABEL,ls_failed]=1
        end ls
        [ -n "${T[$LABEL,ls_failed]:-}" ] || [ "$n" = $((LS_ENTRIES + 1)) ] || die "ls -l showed $((n - 1)) of $LS_ENTRIES entries"
        say "$LABEL: stat of 1,000 missing names"
        begin
        perl -e 'for (1 .. 1000) { stat("$ARGV[0]/missing-$_") and die "missing-$_ exists\n" }' "$MNT/sparse"
        end stat
        unmount_it
    fi
    # Before tree: like rclone's tar x (its time until uploaded is what this is held to), the
    # first files written to this label's fresh service.
    if wants wb && [ "$mount" = mount_blobmount ] && { [ "$LABEL" = link ] || [ -z "$LINK" ]; }; then
        write_back_workload "$url"
    fi
    if wants tree; then
        $mount "$url"
        say "$LABEL: tar x of $TREE_FILES files"
        begin
        mkdir "$MNT/t-$LABEL"
        tar xf "$WORK/tree.tar" -C "$MNT/t-$LABEL"
        t_tar=$T0
        end tarx
        [ -n "$MPORT" ] || wait_uploaded "$url" "t-$LABEL/" "$TREE_FILES"
        unmount_it
        # Until everything is in the service: rclone uploads after close.
        T[$LABEL,tarx_all]=$(elapsed "$t_tar")
        echo "$LABEL,tarx_all ${T[$LABEL,tarx_all]}" >>"$WORK/results"
        drop_caches
        $mount "$url"
        say "$LABEL: ls -lR"
        begin
        n=$(ls -lR "$MNT/t-$LABEL" | grep -c '^-')
        end lsR
        [ "$n" = "$TREE_FILES" ] || die "ls -lR showed $n of $TREE_FILES files"
        unmount_it
        drop_caches
        $mount "$url"
        say "$LABEL: reading the tree back"
        begin
        n=$(tar cf - -C "$MNT/t-$LABEL" . | wc -c)
        end tarc
        [ "$n" -ge "$TREE_BYTES" ] || die "tar c read $n bytes, fewer than the tree's $TREE_BYTES"
        if [ -n "$MPORT" ]; then
            # The same without directory-aware prefetch, for the issue's target.
            unmount_it
            drop_caches
            MOUNT_EXTRA="--prefetch-files 0" $mount "$url"
            say "$LABEL: reading the tree back without directory prefetch"
            begin
            n=$(tar cf - -C "$MNT/t-$LABEL" . | wc -c)
            end tarc0
            [ "$n" -ge "$TREE_BYTES" ] || die "tar c read $n bytes, fewer than the tree's $TREE_BYTES"
        fi
        say "$LABEL: rm -r"
        begin
        rm -r "$MNT/t-$LABEL" || T[$LABEL,rm_failed]=1
        end rm
        unmount_it
    fi
    if wants resume && [ "$mount" = mount_blobmount ] && { [ "$LABEL" = link ] || [ -z "$LINK" ]; }; then
        local total=$((RESUME_MIB * MIB)) cp_pid before
        $mount "$url"
        say "$LABEL: cp of $RESUME_MIB MiB, its mount killed (SIGKILL) at 70%"
        cp "$WORK/resume.bin" "$MNT/resume.bin" 2>/dev/null &
        cp_pid=$!
        until [ "$(metric blobmount_bytes_sent_total)" -ge $((total * 7 / 10)) ]; do
            kill -0 "$cp_pid" 2>/dev/null || die "the cp ended before 70% of it was sent"
            sleep 0.05
        done
        kill -KILL "$MOUNT_PID"
        wait "$MOUNT_PID" 2>/dev/null || true
        MOUNT_PID=
        umount -l "$MNT" 2>/dev/null || true
        wait "$cp_pid" 2>/dev/null || true
        $mount "$url"
        say "$LABEL: remounted; waiting for the resume (the unfinished content goes to .partial-)"
        for ((i = 0; i < 1200; i++)); do
            [ "$(metric blobmount_resume_saved_beside_files)" -ge 1 ] &&
                [ "$(metric blobmount_resume_pending_files)" = 0 ] && break
            sleep 0.5
        done
        [ "$(metric blobmount_resume_saved_beside_files)" -ge 1 ] || die "the resume saved nothing beside the blob"
        say "$LABEL: the same cp again"
        before=$(metric blobmount_bytes_sent_total)
        begin
        cp "$WORK/resume.bin" "$MNT/resume.bin"
        end resume
        T[$LABEL,resume_sent]=$(($(metric blobmount_bytes_sent_total) - before))
        T[$LABEL,resume_reused]=$(metric blobmount_write_bytes_reused)
        [ "$(curl -sS --noproxy '*' "$(blob_url "$url" resume.bin)" | md5sum)" = "$(md5sum <"$WORK/resume.bin")" ] ||
            die "resume.bin in the container is not the file copied"
        rm -f "$MNT/resume.bin" "$MNT"/resume.bin.partial-*
        unmount_it
    fi
    if wants git; then
        $mount "$url"
        say "$LABEL: git clone"
        begin
        git clone -q "$ROOT" "$MNT/git-$LABEL" || T[$LABEL,git_failed]=1
        end git
        [ -n "$MPORT" ] || return 0 # rclone: no check (its clone fails)
        git -C "$MNT/git-$LABEL" fsck --no-progress >"$WORK/fsck.out" 2>&1 || { cat "$WORK/fsck.out" >&2; die "the clone on the mount does not pass git fsck"; }
        unmount_it
    fi
}

if [ "$LOOPBACK" = 1 ] || [ -z "$LINK" ]; then
    fresh_for_label
    raw_baselines loop "$SAS_URL"
    workloads loop mount_blobmount "$SAS_URL"
fi
# --- the FUSE options study ---------------------------------------------------------------
# The same read and tree workloads on loopback (where the kernel interface shows most), once per
# setting of the kernel interface (src/fuse_tuning.rs), the first being the defaults.
STUDY=(
    ""
    "threads=1"
    "clone_fd=1"
    "max_read=128K"
    "max_background=12"
    "readdirplus=auto"
    "" # the defaults again: how far two runs of one setting differ
)
study_label() { # study_label INDEX
    if [ -n "${STUDY[$1]}" ]; then echo "${STUDY[$1]}"; elif [ "$1" = 0 ]; then echo defaults; else echo "defaults, again"; fi
}
if [ "${BENCH_FUSE_STUDY:-0}" = 1 ]; then
    saved=$WORKLOADS
    WORKLOADS=" read tree "
    for ((v = 0; v < ${#STUDY[@]}; v++)); do
        FUSE_TUNING=${STUDY[v]}
        say "FUSE study: $(study_label "$v")"
        NO_FIO=1 workloads "fuse$v" mount_blobmount "$SAS_URL"
    done
    FUSE_TUNING= WORKLOADS=$saved
fi

if [ -n "$LINK" ]; then
    fresh_for_label
    raw_baselines link "$LINK_URL"
    workloads link mount_blobmount "$LINK_URL"
    # What the link served blobmount's label (the rclone label gets a link of its own).
    stop_link
    CONNS=$LINK_CONNS PEAK=$LINK_PEAK
    if [ "$RCLONE" != 0 ] && command -v rclone >/dev/null 2>&1; then
        : >"$WORK/rclone.conf"
        printf '[bench]\ntype = azureblob\n' >"$WORK/rclone.conf"
        fresh_service
        SERVICE_USED=1
        workloads rclone mount_rclone "$LINK_URL"
    fi
    [ -z "$LINK_PID" ] || stop_link
fi

# --- the table ----------------------------------------------------------------------------
TABLE_DONE=1
verdict() { # verdict VALUE OP TARGET -> ok / MISS (a miss is noted in $WORK/missed)
    local v
    [ -n "$1" ] || return 0
    v=$(awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? (v >= t) : (v <= t); print (ok ? "ok" : "MISS") }')
    [ "$v" = ok ] || echo "$v" >>"$WORK/missed"
    echo "$v"
}
get() { echo "${T[$1]:-}"; }
rc() { echo "$(get "rclone,$1")$([ -z "$(get "rclone,$1_failed")" ] || echo ' (failed)')"; }
# The figures are empty (and the commands succeed) when a measurement is missing.
rate() { if [ -n "$1" ]; then calc 'b / 1048576 / s' b="$2" s="$1"; fi; }
round_trips() { if [ -n "$1" ] && [ -n "$3" ]; then calc 's / n / r' s="$1" n="$2" r="$3"; fi; }
ratio() { if [ -n "$1" ] && [ -n "$2" ]; then calc 'a / b' a="$1" b="$2"; fi; }
row() { # row WORKLOAD LOOP_TIME LINK_TIME FIGURE TARGET RESULT KEY RCLONE_TIME
    printf '| %-30s | %8s | %8s | %-22s | %-26s | %-4s | %6s | %-40s | %8s |\n' "$1" "$2" "$3" "$4" "$5" "$6" \
        "${CPU[link,$7]:-${CPU[loop,$7]:-}}" "${REQS[link,$7]:-${REQS[loop,$7]:-}}" "$8"
}
RTT=$(get link,rtt)
LT=${LINK_TEXT:-loopback only}
echo
echo "blobmount $("$BIN" --version 2>/dev/null | head -1 | awk '{ print $NF }') ($(basename "$BIN")), Azurite $([ -n "$AZ_STORE" ] && echo on tmpfs || echo in memory), $(nproc) cores; link: $LT; one round trip through it: ${RTT:-?} s"
printf '| %-30s | %8s | %8s | %-22s | %-26s | %-4s | %6s | %-40s | %8s |\n' workload "loop (s)" "link (s)" "figure (link)" target result "CPU (s)" "requests (link, else loopback)" "rclone"
printf '| %-30s | %8s | %8s | %-22s | %-26s | %-4s | %6s | %-40s | %8s |\n' ------------------------------ -------: -------: ---------------------- -------------------------- ---- -----: ---------------------------------------- -------:
raw_row() { printf '| %-30s | %8s | %8s | %-22s | %-26s | %-4s | %6s | %-40s | %8s |\n' "$1" "$2" "$3" "$4" "" "" "" "" ""; }
big=$((SIZE_MIB * MIB))
if wants read; then
    raw_row "raw: curl GET, 1 connection" "$(get loop,curl)" "$(get link,curl)" "$(rate "$(get link,curl)" $big) MiB/s"
    raw_row "raw: 8 ranged GETs at once" "$(get loop,curl8)" "$(get link,curl8)" "$(rate "$(get link,curl8)" $big) MiB/s"
    raw_row "raw: 16 ranged GETs at once" "$(get loop,curl16)" "$(get link,curl16)" "$(rate "$(get link,curl16)" $big) MiB/s"
fi
if wants write; then
    raw_row "raw: 8 Put Blocks at once" "$(get loop,rawput)" "$(get link,rawput)" "$(rate "$(get link,rawput)" $((WRITE_MIB * MIB))) MiB/s"
fi
if wants read; then
    cold_link=$(rate "$(get link,cold)" $big)
    cold_loop=$(rate "$(get loop,cold)" $big)
    loop_ratio=$(ratio "$(get loop,curl)" "$(get loop,cold)")
    row "cold read ${SIZE_MIB} MiB (cat)" "$(get loop,cold)" "$(get link,cold)" "${cold_link:+$cold_link MiB/s}" ">= 333 MiB/s (350 MB/s)" "$(verdict "$cold_link" '>=' 333.8)" cold "$(rc cold)"
    if [ -n "$(get rclone,cold)" ] && [ -n "$(get link,cold)" ]; then
        x=$(ratio "$(get rclone,cold)" "$(get link,cold)")
        row "  cold read vs rclone" "" "" "${x}x" ">= 5x" "$(verdict "$x" '>=' 5)" "" ""
        # What raw requests get on this machine at best, against the same rclone.
        x=$(ratio "$(get rclone,cold)" "$(get link,curl16)")
        row "  16 ranged GETs vs rclone" "" "" "${x:+${x}x}" "" "" "" ""
    fi
    row "  loopback cold / raw curl" "" "" "${loop_ratio}" ">= 0.6" "$(verdict "$loop_ratio" '>=' 0.6)" "" ""
    row "warm re-read (cat)" "$(get loop,warm)" "$(get link,warm)" "$(rate "$(get link,warm)" $big) MiB/s" "" "" warm "$(rc warm)"
    budget=${BENCH_CACHE_BUDGET_MIB:-$(
        "$BIN" mount --help 2>/dev/null |
            awk '/--cache-size/ { f = NR } f && NR - f <= 8 && match($0, /\[default: [0-9]+M\]/) { print substr($0, RSTART + 10, RLENGTH - 12) + 0; exit }'
    )}
    hwm=$(get link,hwm)
    hwm=${hwm:-$(get loop,hwm)}
    row "daemon peak RSS (MiB)" "" "" "$hwm" "<= ${budget:-?} + 40" "$([ -n "$budget" ] && verdict "$hwm" '<=' $((budget + 40)))" "" ""
    row "4 readers of ${READERS_MIB} MiB at once" "$(get loop,readers)" "$(get link,readers)" "$(rate "$(get link,readers)" $((4 * READERS_MIB * MIB))) MiB/s" "" "" readers "$(rc readers)"
    if [ -n "$(get link,rand4k_rate)$(get loop,rand4k_rate)" ]; then
        row "fio random 4 KiB (MiB/s)" "$(get loop,rand4k_rate)" "$(get link,rand4k_rate)" "${FIO_SECS} s each" "" "" rand4k "$(rc rand4k_rate)"
        row "fio random 256 KiB (MiB/s)" "$(get loop,rand256k_rate)" "$(get link,rand256k_rate)" "" "" "" rand256k "$(rc rand256k_rate)"
    fi
fi
if wants write; then
    w=$(rate "$(get link,write)" $((WRITE_MIB * MIB)))
    wr=$(ratio "$(get link,rawput)" "$(get link,write)")
    row "write ${WRITE_MIB} MiB (cp, committed)" "$(get loop,write)" "$(get link,write)" "${w:+$w MiB/s, ${wr}x raw}" ">= 0.8x raw" "$(verdict "$wr" '>=' 0.8)" write "$(rc write)"
fi
if wants names; then
    lists=$(sed -n 's/.*list_blobs=\([0-9]*\).*/\1/p' <<<"${REQS[link,ls]:-${REQS[loop,ls]:-}}")
    others=$(tr ' ' '\n' <<<"${REQS[link,ls]:-${REQS[loop,ls]:-}}" | grep -vc '^list_blobs=' || true)
    row "ls -l of $LS_ENTRIES entries, cold" "$(get loop,ls)" "$(get link,ls)" "${lists:-?} List Blobs" "<= 2 List Blobs, 0 other" "$(verdict "${lists:-99}" '<=' 2)$([ "$others" = 0 ] || echo '(other)')" ls "$(rc ls)"
    nreq=$(tr ' ' '\n' <<<"${REQS[link,stat]:-${REQS[loop,stat]:-}}" | awk -F= '{ s += $2 } END { print s + 0 }')
    row "stat of 1,000 missing names" "$(get loop,stat)" "$(get link,stat)" "$nreq requests" "<= 4 requests" "$(verdict "$nreq" '<=' 4)" stat "$(rc stat)"
fi
if wants resume && [ -n "$(get link,resume)$(get loop,resume)" ]; then
    l=link
    [ -n "$(get link,resume)" ] || l=loop
    pct=$(calc '100 * s / t' s="$(get $l,resume_sent)" t=$((RESUME_MIB * MIB)))
    row "cp ${RESUME_MIB} MiB again after kill -9 at 70%" "$(get loop,resume)" "$(get link,resume)" "${pct}% sent, $(($(get $l,resume_reused) / MIB)) MiB reused" "<= 35% sent" "$(verdict "$pct" '<=' 35)" resume ""
fi
if wants tree; then
    tx=$(round_trips "$(get link,tarx)" "$TREE_FILES" "$RTT")
    row "tar x of $TREE_FILES files" "$(get loop,tarx)" "$(get link,tarx)" "${tx:+$tx round trips/file}" "<= 2.2 round trips/file" "$(verdict "$tx" '<=' 2.2)" tarx "$(rc tarx)"
    row "ls -lR of them, cold" "$(get loop,lsR)" "$(get link,lsR)" "" "" "" lsR "$(rc lsR)"
    tc=$(round_trips "$(get link,tarc)" "$TREE_FILES" "$RTT")
    row "read them back (tar c), cold" "$(get loop,tarc)" "$(get link,tarc)" "${tc:+$tc round trips/file}" "<= 0.5 round trips/file" "$(verdict "$tc" '<=' 0.5)" tarc "$(rc tarc)"
    t0=$(round_trips "$(get link,tarc0)" "$TREE_FILES" "$RTT")
    row "  the same, --prefetch-files 0" "$(get loop,tarc0)" "$(get link,tarc0)" "${t0:+$t0 round trips/file}" "<= 1.1 round trips/file" "$(verdict "$t0" '<=' 1.1)" tarc0 ""
    rr=$(round_trips "$(get link,rm)" "$TREE_FILES" "$RTT")
    row "rm -r of them" "$(get loop,rm)" "$(get link,rm)" "${rr:+$rr round trips/file}" "" "" rm "$(rc rm)"
fi
if wants tree && [ -n "$(get rclone,tarx_all)" ]; then
    row "  rclone: tar x until uploaded" "" "" "" "" "" "" "$(get rclone,tarx_all)"
fi
if wants wb && [ -n "$(get link,tarwb)$(get loop,tarwb)" ]; then
    l=link
    [ -n "$(get link,tarwb)" ] || l=loop
    x=$(ratio "$(get $l,tarwb)" "$(get rclone,tarx_all)")
    row "tar x --write-back, committed" "$(get loop,tarwb)" "$(get link,tarwb)" "${x:+${x}x rclone, }tar $(get $l,tarwb_close) s" "<= 0.5x rclone (tar+umount)" "$(verdict "$x" '<=' 0.5)" tarwb "$(get rclone,tarx_all)"
    ok=MISS
    # Something must have been checked: no closed file at all proves nothing.
    [ "$KILL_EXACT" != "$KILL_CLOSED" ] || [ "$KILL_CLOSED" = 0 ] || ok=ok
    [ "$ok" = ok ] || echo MISS >>"$WORK/missed"
    row "  kill -9 during it (${T[$l,kills]}x)" "" "" "$KILL_EXACT/$KILL_CLOSED closed exact" "every closed file exact" "$ok" "" ""
    printf '    (kills at random moments, %s of them before tar ended; %s unfinished files kept as .partial-)\n' "$KILL_MIDRUN" "$KILL_PARTIAL" >>"$WORK/notes"
fi
if wants git; then
    row "git clone of this repository" "$(get loop,git)" "$(get link,git)" "" "" "" git "$(rc git)"
fi
[ ! -s "$WORK/notes" ] || cat "$WORK/notes"
if [ -n "$LINK" ]; then
    printf '\nlink: %s connections opened, at most %s open at once\n' "${CONNS:-?}" "${PEAK:-?}"
fi
printf 'memory: %s\n' "$VM_MEMORY"
if wants read && [ -n "$(get link,cold)" ]; then
    printf 'CPU seconds during the cold read through the link (%s s on %s cores): Azurite %s, the link %s, the mount %s; rclone'"'"'s: Azurite %s, the link %s, rclone %s\n' \
        "$(get link,cold)" "$(nproc)" "${AZCPU[link,cold]:-?}" "${LNCPU[link,cold]:-?}" "${CPU[link,cold]:-?}" \
        "${AZCPU[rclone,cold]:-?}" "${LNCPU[rclone,cold]:-?}" "${CPU[rclone,cold]:-?}"
fi
echo

if [ "${BENCH_FUSE_STUDY:-0}" = 1 ]; then
    echo "FUSE options, on loopback (BLOBMOUNT_FUSE_TUNING; defaults: threads=4 clone_fd=0 max_read=1M max_background=64 readdirplus=always)"
    printf '| %-22s | %12s | %12s | %10s | %10s | %10s | %10s |\n' setting "cold MiB/s" "4 rdr MiB/s" "tar x (s)" "ls -lR (s)" "tar c (s)" "rm -r (s)"
    printf '| %-22s | %12s | %12s | %10s | %10s | %10s | %10s |\n' ---------------------- -----------: -----------: ---------: ---------: ---------: ---------:
    for ((v = 0; v < ${#STUDY[@]}; v++)); do
        printf '| %-22s | %12s | %12s | %10s | %10s | %10s | %10s |\n' "$(study_label "$v")" \
            "$(rate "$(get "fuse$v,cold")" $big)" "$(rate "$(get "fuse$v,readers")" $((4 * READERS_MIB * MIB)))" \
            "$(get "fuse$v,tarx")" "$(get "fuse$v,lsR")" "$(get "fuse$v,tarc")" "$(get "fuse$v,rm")"
    done
    echo
fi

if [ -s "$WORK/missed" ] && [ "${BENCH_STRICT:-0}" = 1 ]; then
    exit 1
fi
