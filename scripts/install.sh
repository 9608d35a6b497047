#!/usr/bin/env bash
# Installs blobmount: the binary, its man pages, shell completions, the systemd template unit
# and an example config. Run as root from the repository:
#
#   bash scripts/install.sh                 # builds (release) and installs under /usr/local
#   DESTDIR=/tmp/pkg bash scripts/install.sh --no-build --bin target/release/blobmount
#
# Options: --prefix DIR (default /usr/local), --bin FILE (an already built binary),
# --no-build. DESTDIR is put in front of every installed path (packaging).
set -euo pipefail

prefix=/usr/local
bin=""
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
root="${DESTDIR:-}"
here="$(cd "$(dirname "$0")/.." && pwd)"

if [ -z "$bin" ]; then
    bin="$here/target/release/blobmount"
    if [ "$build" = 1 ]; then
        (cd "$here" && cargo build --release --locked)
    fi
fi
[ -x "$bin" ] || { echo "install.sh: no binary at $bin (build it, or give --bin)" >&2; exit 1; }

install -D -m 0755 "$bin" "$root$prefix/bin/blobmount"

# Pages of section 1 (the commands) and 5 (blobmount.toml, the config file).
pages=$(mktemp -d)
trap 'rm -rf "$pages"' EXIT
"$bin" man --dir "$pages"
for page in "$pages"/*.[15]; do
    install -D -m 0644 "$page" "$root$prefix/share/man/man${page##*.}/$(basename "$page")"
done

"$bin" completions bash | install -D -m 0644 /dev/stdin "$root$prefix/share/bash-completion/completions/blobmount"
"$bin" completions zsh | install -D -m 0644 /dev/stdin "$root$prefix/share/zsh/site-functions/_blobmount"
"$bin" completions fish | install -D -m 0644 /dev/stdin "$root$prefix/share/fish/vendor_completions.d/blobmount.fish"

# The unit names the binary by its installed path.
sed "s#/usr/local/bin/blobmount#$prefix/bin/blobmount#g" "$here/systemd/blobmount@.service" \
    | install -D -m 0644 /dev/stdin "$root/etc/systemd/system/blobmount@.service"

# /etc/blobmount holds tokens: root only. An existing config is never replaced.
install -d -m 0700 "$root/etc/blobmount"
if [ ! -e "$root/etc/blobmount/config.toml" ]; then
    install -m 0600 "$here/packaging/config.toml.example" "$root/etc/blobmount/config.toml"
fi

echo "installed blobmount $("$bin" --version | cut -d' ' -f2) under $root$prefix"
