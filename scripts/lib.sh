# Shell helpers shared by scripts/bench.sh and scripts/pjdfstest.sh: sourced, not run. The
# script sourcing it defines `say` and `die`, and runs from the repository's root.

# is_mounted DIR: whether DIR is a mount point now.
is_mounted() {
    awk -v mp="$1" '$5 == mp { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# stop_pid PID: SIGTERM, up to 10 s to go, then SIGKILL; reaps it.
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

# free_port: a loopback TCP port free a moment ago.
free_port() {
    node -e 'const s = require("net").createServer();
             s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# start_azurite WORK: Azurite's blob service in memory on a free loopback port, its log in
# WORK/azurite.log; sets PORT and AZURITE_PID once it listens (the caller stops it by pid).
# AZURITE_NODE_FLAGS: options for node itself (V8's, which NODE_OPTIONS may not carry).
# AZURITE_LOCATION: keep the blobs in files there instead of in memory (the caller removes it).
start_azurite() {
    local work=$1 root=$PWD i store=(--inMemoryPersistence)
    PORT=$(free_port)
    if [ -n "${AZURITE_LOCATION:-}" ]; then
        mkdir -p "$AZURITE_LOCATION"
        store=(--location "$AZURITE_LOCATION")
    fi
    say "starting Azurite on 127.0.0.1:$PORT (${AZURITE_LOCATION:-in memory})"
    (
        cd "$work"
        # shellcheck disable=SC2086 # the flags are words
        exec node ${AZURITE_NODE_FLAGS:-} "$root/node_modules/.bin/azurite-blob" "${store[@]}" \
            --blobHost 127.0.0.1 --blobPort "$PORT" \
            --skipApiVersionCheck --loose --silent --disableTelemetry --disableProductStyleUrl \
            </dev/null >"$work/azurite.log" 2>&1
    ) &
    AZURITE_PID=$!
    for ((i = 0; i < 300; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        kill -0 "$AZURITE_PID" 2>/dev/null || { cat "$work/azurite.log" >&2; die "Azurite exited"; }
        sleep 0.1
    done
    die "Azurite did not listen within 30 s"
}
