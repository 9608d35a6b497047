#!/usr/bin/env bash
# Installs what blobmount's tests, demo and benchmark need and are missing, on a
# Debian machine that has Rust, Node.js/npm and apt:
#   - fuse3 (fusermount3, mount.fuse3), rsync, git and attr (setfattr) (the tests drive them
#     through the mount), mount(8) (util-linux), and systemd-analyze (systemd) and man (man-db) to verify the unit
#     file, from apt;
#   - Azurite and the Azure Storage SDK (package.json / package-lock.json), with `npm ci`.
# It also checks that /dev/fuse exists. Safe to run again: it only installs what is missing.
# Extra Debian packages can be asked for with EXTRA_APT_PACKAGES="curl ..." (scripts/bench.sh does).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'install-test-deps: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# --- root or sudo -----------------------------------------------------------
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    fi
fi

APT_UPDATED=0
apt_install() {
    # Installs the Debian packages given; runs `apt-get update` only if the first try fails.
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install these packages by hand: $*"
    if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
        die "not root and no sudo; install these packages by hand: $*"
    fi
    say "installing with apt-get: $*"
    if "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" </dev/null; then
        return 0
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get install failed; running apt-get update and trying again"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null ||
            die "apt-get update failed"
        APT_UPDATED=1
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" </dev/null &&
            return 0
    fi
    die "could not install: $*"
}

# --- fuse3 (fusermount3) ------------------------------------------------------
missing=()
if ! command -v fusermount3 >/dev/null 2>&1; then
    missing+=(fuse3)
fi
# Shell tools the integration tests drive through the mount.
for tool in rsync git; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
command -v mount >/dev/null 2>&1 || missing+=(mount)
# setfattr/getfattr: extended attributes through the mount (tests/faults.rs).
command -v setfattr >/dev/null 2>&1 || missing+=(attr)
[ -x /sbin/mount.fuse3 ] || [ -x /usr/sbin/mount.fuse3 ] || missing+=(fuse3)
# The unit file check (tests/systemd.rs): systemd-analyze verify, which asks man for the
# Documentation= page. Installing systemd in a container does not start it.
if [ -z "${BLOBMOUNT_NO_SYSTEMD:-}" ]; then
    command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
    command -v man >/dev/null 2>&1 || missing+=(man-db)
fi
for pkg in ${EXTRA_APT_PACKAGES:-}; do
    # Only names of commands that are also package names are asked for (curl, ...).
    command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
fi
command -v fusermount3 >/dev/null 2>&1 || die "fusermount3 still missing after installing fuse3"
say "fusermount3: $(command -v fusermount3)"

# --- /dev/fuse ----------------------------------------------------------------
if [ ! -c /dev/fuse ]; then
    die "/dev/fuse is missing: this machine cannot mount FUSE filesystems.
  On a host: load the module (modprobe fuse). In a container: run it with
  --device /dev/fuse --cap-add SYS_ADMIN (and an AppArmor profile that allows mounts)."
fi
if [ ! -r /dev/fuse ] || [ ! -w /dev/fuse ]; then
    die "/dev/fuse exists but $(id -un) cannot open it for reading and writing"
fi
say "/dev/fuse: present"

# --- Node.js packages (Azurite, @azure/storage-blob) ------------------------------
command -v node >/dev/null 2>&1 || die "node not found: install Node.js (>= 20) and npm first"
command -v npm >/dev/null 2>&1 || die "npm not found: install npm first"
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    die "Node.js $(node --version) is too old for Azurite 3.37 (it declares >= 22; 20 is known to work)"
fi

# Reinstall when something is missing or the installed Azurite is not the pinned one.
npm_wanted() {
    node -e '
        const fs = require("fs");
        const want = require("./package.json").devDependencies;
        for (const [name, version] of Object.entries(want)) {
            const p = "node_modules/" + name + "/package.json";
            if (!fs.existsSync(p) || JSON.parse(fs.readFileSync(p, "utf8")).version !== version) {
                console.log(name + "@" + version);
                process.exit(0);
            }
        }' 2>/dev/null
}
if [ ! -x node_modules/.bin/azurite ] || [ ! -x node_modules/.bin/azurite-blob ] || [ -n "$(npm_wanted)" ]; then
    say "running npm ci (Azurite and @azure/storage-blob, as pinned in package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error </dev/null || die "npm ci failed"
fi
[ -x node_modules/.bin/azurite-blob ] || die "node_modules/.bin/azurite-blob missing after npm ci"
say "azurite: $(node -p 'require("./node_modules/azurite/package.json").version') (node_modules/.bin/azurite-blob)"
say "ready"
