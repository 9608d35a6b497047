#!/usr/bin/env bash
# Sequential-read benchmark of blobmount against Azurite (in memory, on loopback):
#   1. uploads one random blob (default 1 GiB) in 8 MiB blocks with the Azure SDK;
#   2. times `curl` GETs of the whole blob: the baseline;
#   3. mounts the container (release build, default options, --foreground) and times
#      `cat FILE > /dev/null` right after mounting (cold) and again (warm);
#   4. reads the daemon's peak RSS (VmHWM in /proc/PID/status);
#   5. times writes through the mount: `cp` of a local file (until cp returns, i.e. the
#      commit at close is done), `cp -r` of a directory of small files, and their `rm -r`;
# and prints one table with the ratios and their targets:
#   cold / curl >= 0.6,  warm / curl >= 1.0,  peak RSS <= cache budget + 40 MiB.
# The writes have no target: compare them between builds (BENCH_BIN) in one run.
#
# Environment:
#   BENCH_SIZE_MIB=1024     blob size in MiB
#   BENCH_MOUNT_ARGS=""     extra `blobmount mount` options (e.g. "--cache-size 2G")
#   BENCH_CACHE_BUDGET_MIB  cache budget for the RSS target (default: from --cache-size in
#                           BENCH_MOUNT_ARGS, else the default shown by `blobmount mount --help`)
#   BENCH_WRITE_MIB=256     size of the file copied onto the mount (0: no write workloads)
#   BENCH_SMALL_FILES=300   how many 4 KiB files `cp -r` writes (0: none)
#   BENCH_LINK="10ms 100M"  put a link emulator (examples/link.rs) between curl/the mount and
#                           Azurite: that round trip, and that bandwidth per connection (bytes
#                           per second, 100M = 100 MiB/s); the seeding upload goes direct
#   BENCH_BIN=PATH          the blobmount binary to measure (default: a release build of
#                           this tree, built first), e.g. an older build to compare with
#   BENCH_SKIP_MOUNT=1      stop after the curl baseline (no FUSE needed)
#   BENCH_STRICT=1          exit 1 if a target is missed
# Everything it starts is stopped on exit (unmount, then kill by pid), also on Ctrl-C.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
SIZE=$((SIZE_MIB * 1024 * 1024))
WRITE_MIB=${BENCH_WRITE_MIB:-256}
SMALL_FILES=${BENCH_SMALL_FILES:-300}
BIN=${BENCH_BIN:-$ROOT/target/release/blobmount}
ACCOUNT=devstoreaccount1
CONTAINER=bench
BLOB=big.bin

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/blobmount-bench.XXXXXX")
MNT=$WORK/mnt
AZURITE_PID=
MOUNT_PID=
LINK_PID=

is_mounted() {
    awk -v mp="$1" '$5 == mp { found = 1 } END { exit !found }' /proc/self/mountinfo
}

stop_pid() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    set +e
    if is_mounted "$MNT"; then
        fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
    fi
    stop_pid "$MOUNT_PID"
    stop_pid "$LINK_PID"
    stop_pid "$AZURITE_PID"
    if is_mounted "$MNT"; then
        say "warning: $MNT is still mounted; leaving $WORK in place"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }
# mib_per_s BYTES SECONDS
mib_per_s() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", (s > 0 ? b / 1048576 / s : 0) }'; }

# --- setup ------------------------------------------------------------------------
EXTRA_APT_PACKAGES=curl bash scripts/install-test-deps.sh
if [ -z "${BENCH_BIN:-}" ]; then
    say "building (cargo build --release)"
    cargo build --release --quiet
fi
[ -x "$BIN" ] || die "$BIN missing"

PORT=$(node -e 'const s = require("net").createServer();
                s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')
ENDPOINT=http://127.0.0.1:$PORT/$ACCOUNT
say "starting Azurite on 127.0.0.1:$PORT (in memory)"
(
    cd "$WORK"
    exec "$ROOT/node_modules/.bin/azurite-blob" --inMemoryPersistence \
        --blobHost 127.0.0.1 --blobPort "$PORT" \
        --skipApiVersionCheck --loose --silent --disableTelemetry --disableProductStyleUrl \
        </dev/null >"$WORK/azurite.log" 2>&1
) &
AZURITE_PID=$!
for ((i = 0; i < 300; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 "$AZURITE_PID" 2>/dev/null || { cat "$WORK/azurite.log" >&2; die "Azurite exited"; }
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || die "Azurite did not listen within 30 s"

say "uploading a ${SIZE_MIB} MiB random blob $CONTAINER/$BLOB"
t0=$(now)
node scripts/demo-seed.mjs "$ENDPOINT" "$CONTAINER" --random "$BLOB" "$SIZE"
t1=$(now)
say "uploaded in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"

# A container SAS from the SDK: an independent signer, for curl and the mount (read, list;
# add, create, write, delete for the write workloads).
SAS_URL=$(node scripts/demo-seed.mjs "$ENDPOINT" "$CONTAINER" --sas racwdl 2)
BLOB_URL="${SAS_URL%%\?*}/$BLOB?${SAS_URL#*\?}"

# --- the link ---------------------------------------------------------------------------
LINK=${BENCH_LINK:-}
LINK_TEXT="on loopback"
if [ -n "$LINK" ]; then
    read -r LINK_RTT LINK_RATE <<<"$LINK"
    say "building the link emulator (cargo build --release --example link)"
    cargo build --release --quiet --example link
    "$ROOT/target/release/examples/link" --upstream "127.0.0.1:$PORT" --rtt "$LINK_RTT" \
        --conn-rate "${LINK_RATE:-100M}" </dev/null >"$WORK/link.out" 2>&1 &
    LINK_PID=$!
    for ((i = 0; i < 100; i++)); do
        grep -q '^listening on' "$WORK/link.out" 2>/dev/null && break
        kill -0 "$LINK_PID" 2>/dev/null || { cat "$WORK/link.out" >&2; die "the link exited"; }
        sleep 0.1
    done
    LPORT=$(awk '/^listening on/ { n = split($3, a, ":"); print a[n] }' "$WORK/link.out")
    [ -n "$LPORT" ] || die "the link did not start"
    # Everything measured goes through the link (the SAS signs no host or port).
    SAS_URL=${SAS_URL/127.0.0.1:$PORT\//127.0.0.1:$LPORT\/}
    BLOB_URL=${BLOB_URL/127.0.0.1:$PORT\//127.0.0.1:$LPORT\/}
    LINK_TEXT="through a link of ${LINK_RTT} round trip, ${LINK_RATE:-100M}/s per connection"
    say "link on 127.0.0.1:$LPORT: $LINK_TEXT"
fi

# --- curl baseline --------------------------------------------------------------------
curl_get() {
    local out code bytes secs
    out=$(curl -sS --noproxy '*' -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "$BLOB_URL")
    read -r code bytes secs <<<"$out"
    [ "$code" = 200 ] || die "curl GET: HTTP $code"
    [ "$bytes" = "$SIZE" ] || die "curl GET: got $bytes bytes, wanted $SIZE"
    echo "$secs"
}
say "curl GET (1st)"
CURL1=$(curl_get)
say "curl GET (2nd)"
CURL2=$(curl_get)

# --- blobmount ----------------------------------------------------------------------------
declare -A REQS CPU
COLD='' WARM='' HWM_KIB='' BUDGET_MIB='' WRITE_SECS='' SMALL_SECS='' RM_SECS=''
if [ "${BENCH_SKIP_MOUNT:-0}" != 1 ]; then
    # shellcheck disable=SC2206 # word splitting of the extra options is wanted
    EXTRA=(${BENCH_MOUNT_ARGS:-})
    mkdir -p "$MNT"
    say "mounting on $MNT"
    MPORT=$(node -e 'const s = require("net").createServer();
                     s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')
    "$BIN" mount "$SAS_URL" "$MNT" --foreground --log-level warn --metrics-addr "127.0.0.1:$MPORT" "${EXTRA[@]}" \
        </dev/null >"$WORK/blobmount.log" 2>&1 &
    MOUNT_PID=$!
    for ((i = 0; i < 200; i++)); do
        is_mounted "$MNT" && break
        if ! kill -0 "$MOUNT_PID" 2>/dev/null; then
            cat "$WORK/blobmount.log" >&2
            die "blobmount exited before mounting"
        fi
        sleep 0.1
    done
    is_mounted "$MNT" || { cat "$WORK/blobmount.log" >&2; die "blobmount did not mount within 20 s"; }

    # Requests by operation so far, from the mount's metrics: "op count" lines.
    requests_now() {
        curl -sS --noproxy '*' "http://127.0.0.1:$MPORT/metrics" |
            awk -F'[{}",= ]+' '/^blobmount_requests_total\{/ { for (i = 2; i < NF; i++) if ($i == "op") n[$(i + 1)] += $NF }
                END { for (o in n) print o, n[o] }' | sort
    }
    # The daemon's CPU time so far (user + system), in seconds.
    cpu_now() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$MOUNT_PID/stat"; }
    # begin; WORKLOAD; end NAME: records NAME's requests ("op=n …") and daemon CPU seconds.
    declare -A REQS CPU
    begin() { requests_now >"$WORK/req.before"; CPU0=$(cpu_now); }
    end() {
        requests_now >"$WORK/req.after"
        REQS[$1]=$(join -a 2 -e 0 -o 0,1.2,2.2 "$WORK/req.before" "$WORK/req.after" |
            awk '$3 - $2 > 0 { printf "%s%s=%d", (n++ ? " " : ""), $1, $3 - $2 }')
        CPU[$1]=$(awk -v a="$CPU0" -v b="$(cpu_now)" 'BEGIN { printf "%.2f", b - a }')
    }

    say "cold read: cat $BLOB > /dev/null"
    begin
    t0=$(now)
    cat "$MNT/$BLOB" >/dev/null
    t1=$(now)
    end cold
    COLD=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    got=$(stat -c %s "$MNT/$BLOB")
    [ "$got" = "$SIZE" ] || die "the mounted file has $got bytes, wanted $SIZE"

    say "warm read: cat $BLOB > /dev/null"
    begin
    t0=$(now)
    cat "$MNT/$BLOB" >/dev/null
    t1=$(now)
    end warm
    WARM=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')

    HWM_KIB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$MOUNT_PID/status")

    # The cache budget: BENCH_CACHE_BUDGET_MIB, else --cache-size from the extra options,
    # else the default in `blobmount mount --help` ("[default: 512M]").
    BUDGET_MIB=${BENCH_CACHE_BUDGET_MIB:-}
    if [ -z "$BUDGET_MIB" ]; then
        size_text=
        for ((i = 0; i < ${#EXTRA[@]}; i++)); do
            case ${EXTRA[i]} in
            --cache-size=*) size_text=${EXTRA[i]#--cache-size=} ;;
            --cache-size) size_text=${EXTRA[i + 1]:-} ;;
            esac
        done
        if [ -z "$size_text" ]; then
            size_text=$("$BIN" mount --help 2>/dev/null |
                awk '/--cache-size/ { f = NR } f && NR - f <= 8 && match($0, /\[default: [^]]+\]/) { print substr($0, RSTART + 10, RLENGTH - 11); exit }')
        fi
        BUDGET_MIB=$(awk -v s="$size_text" 'BEGIN {
            if (!match(s, /^[0-9.]+/)) exit
            n = substr(s, 1, RLENGTH); u = tolower(substr(s, RLENGTH + 1))
            if (u == "" || u == "b") m = 1 / 1048576
            else if (u ~ /^k/) m = 1 / 1024
            else if (u ~ /^m/) m = 1
            else if (u ~ /^g/) m = 1024
            else if (u ~ /^t/) m = 1048576
            else exit
            printf "%d", n * m }')
    fi

    # elapsed SECONDS_SINCE: seconds since then, 3 decimals
    elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
    if [ "$WRITE_MIB" -gt 0 ]; then
        head -c $((WRITE_MIB * 1048576)) /dev/urandom >"$WORK/write.bin"
        say "write: cp of a ${WRITE_MIB} MiB file (until committed at close)"
        begin
        t0=$(now)
        cp "$WORK/write.bin" "$MNT/write.bin"
        WRITE_SECS=$(elapsed "$t0")
        end write
        got=$(stat -c %s "$MNT/write.bin")
        [ "$got" = $((WRITE_MIB * 1048576)) ] || die "the written file has $got bytes"
        rm -f "$WORK/write.bin"
    fi
    if [ "$SMALL_FILES" -gt 0 ]; then
        mkdir -p "$WORK/small"
        for ((i = 0; i < SMALL_FILES; i++)); do
            head -c 4096 /dev/urandom >"$WORK/small/f$i"
        done
        say "small files: cp -r of $SMALL_FILES files of 4 KiB, then rm -r"
        begin
        t0=$(now)
        cp -r "$WORK/small" "$MNT/small"
        SMALL_SECS=$(elapsed "$t0")
        end small
        n=$(find "$MNT/small" -type f | wc -l)
        [ "$n" = "$SMALL_FILES" ] || die "the mount shows $n of the $SMALL_FILES small files"
        begin
        t0=$(now)
        rm -r "$MNT/small"
        RM_SECS=$(elapsed "$t0")
        end rm
    fi

    say "unmounting"
    fusermount3 -u "$MNT"
    stop_pid "$MOUNT_PID"
    MOUNT_PID=
fi

# --- the table ----------------------------------------------------------------------------
verdict() { # verdict VALUE OP TARGET -> ok / MISS
    awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? (v >= t) : (v <= t); print (ok ? "ok" : "MISS") }'
}
MISSED=0
# row MEASUREMENT TIME RATE TARGET RESULT [WORKLOAD]: WORKLOAD's daemon CPU and requests.
row() {
    local cpu='' reqs=''
    if [ -n "${6:-}" ]; then
        cpu=${CPU[$6]:-}
        reqs=${REQS[$6]:-}
    fi
    printf '| %-34s | %12s | %12s | %-22s | %-6s | %8s | %s |\n' "$1" "$2" "$3" "$4" "$5" "$cpu" "$reqs"
}

echo
echo "blobmount read (${SIZE_MIB} MiB blob) and write, Azurite in memory $LINK_TEXT, $(nproc) cores, $(basename "$BIN") $("$BIN" --version 2>/dev/null | head -1)"
printf '| %-34s | %12s | %12s | %-22s | %-6s | %8s | %s |\n' "measurement" "time (s)" "MiB/s" "target" "result" "CPU (s)" "requests"
printf '| %-34s | %12s | %12s | %-22s | %-6s | %8s | %s |\n' "----------------------------------" "-----------:" "-----------:" "----------------------" "------" "-------:" "--------"
row "curl GET, 1st (baseline)" "$CURL1" "$(mib_per_s "$SIZE" "$CURL1")" "" ""
row "curl GET, 2nd" "$CURL2" "$(mib_per_s "$SIZE" "$CURL2")" "" ""
if [ -n "$COLD" ]; then
    r_cold=$(awk -v c="$CURL1" -v m="$COLD" 'BEGIN { printf "%.2f", c / m }')
    r_warm=$(awk -v c="$CURL1" -v m="$WARM" 'BEGIN { printf "%.2f", c / m }')
    v_cold=$(verdict "$r_cold" ">=" 0.6)
    v_warm=$(verdict "$r_warm" ">=" 1.0)
    hwm_mib=$(awk -v k="$HWM_KIB" 'BEGIN { printf "%.1f", k / 1024 }')
    row "blobmount cold read (cat)" "$COLD" "$(mib_per_s "$SIZE" "$COLD")" "" "" cold
    row "blobmount warm re-read (cat)" "$WARM" "$(mib_per_s "$SIZE" "$WARM")" "" "" warm
    row "ratio cold / curl (throughput)" "" "$r_cold" ">= 0.6" "$v_cold"
    row "ratio warm / curl (throughput)" "" "$r_warm" ">= 1.0" "$v_warm"
    if [ -n "$BUDGET_MIB" ]; then
        limit=$((BUDGET_MIB + 40))
        v_rss=$(verdict "$hwm_mib" "<=" "$limit")
        row "daemon peak RSS (VmHWM), MiB" "" "$hwm_mib" "<= $limit (cache + 40)" "$v_rss"
    else
        v_rss=ok
        row "daemon peak RSS (VmHWM), MiB" "" "$hwm_mib" "(cache budget unknown)" ""
    fi
    if [ -n "$WRITE_SECS" ]; then
        row "blobmount write (cp ${WRITE_MIB} MiB)" "$WRITE_SECS" "$(mib_per_s $((WRITE_MIB * 1048576)) "$WRITE_SECS")" "" "" write
    fi
    if [ -n "$SMALL_SECS" ]; then
        row "cp -r of $SMALL_FILES x 4 KiB (files/s)" "$SMALL_SECS" "$(awk -v n="$SMALL_FILES" -v s="$SMALL_SECS" 'BEGIN { printf "%.1f", n / s }')" "" "" small
        row "rm -r of them (files/s)" "$RM_SECS" "$(awk -v n="$SMALL_FILES" -v s="$RM_SECS" 'BEGIN { printf "%.1f", n / s }')" "" "" rm
    fi
    for v in "$v_cold" "$v_warm" "$v_rss"; do
        [ "$v" = ok ] || MISSED=1
    done
else
    row "blobmount cold / warm / RSS" "skipped" "" "" ""
fi
if [ -n "$LINK_PID" ]; then
    stop_pid "$LINK_PID"
    LINK_PID=
    # What went through the link: connections opened, and the most open at once.
    read -r _ conns _ peak _ _ _ _ < <(grep '^connections' "$WORK/link.out" || echo "connections ? peak_open ? x x x x")
    row "link: connections opened / most at once" "" "$conns / $peak" "" ""
fi
echo

if [ "$MISSED" = 1 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then
    exit 1
fi
