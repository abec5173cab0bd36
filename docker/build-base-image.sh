#!/bin/sh
# Build a local Debian bookworm base image with python3, python3-venv and python3-pip from the
# configured Debian mirror (debootstrap, minbase variant) and import it into Docker, for machines
# that can reach a Debian mirror but no container registry:
#
#   sudo docker/build-base-image.sh                  # -> warren-base:bookworm
#   docker build -f docker/Dockerfile --build-arg BASE_IMAGE=warren-base:bookworm -t warren .
#
# Environment:
#   WARREN_BASE_TAG     image tag to create (default warren-base:bookworm)
#   DEBIAN_MIRROR       mirror URL (default: the first Debian URI in /etc/apt/sources.list*,
#                       else http://deb.debian.org/debian)
#   DEBIAN_SUITE        suite (default bookworm)
#   WARREN_BASE_HOST_CA 1 (default) copies the host's local CA certificates
#                       (/usr/local/share/ca-certificates/*.crt) into the image, so pip inside
#                       `docker build` trusts a TLS-intercepting proxy the host trusts; 0 skips it
# Needs root (debootstrap), debootstrap and a running Docker daemon.
set -eu

TAG=${WARREN_BASE_TAG:-warren-base:bookworm}
SUITE=${DEBIAN_SUITE:-bookworm}
HOST_CA=${WARREN_BASE_HOST_CA:-1}

find_mirror() {
    # deb822 .sources files: "URIs: <url>" in a stanza whose URI ends in /debian
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$file")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    # one-line format: "deb [options] <url> <suite> <components>"
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*\/debian\/?$/) { print $i; exit } }' "$file")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    echo "http://deb.debian.org/debian"
}

MIRROR=${DEBIAN_MIRROR:-$(find_mirror)}

if [ "$(id -u)" != 0 ]; then
    echo "build-base-image.sh: debootstrap needs root" >&2
    exit 1
fi
command -v debootstrap >/dev/null || { echo "build-base-image.sh: install debootstrap" >&2; exit 1; }
command -v docker >/dev/null || { echo "build-base-image.sh: docker CLI not found" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"

echo "debootstrap $SUITE from $MIRROR into $ROOT"
debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,passwd,tini \
    "$SUITE" "$ROOT" "$MIRROR"

if [ "$HOST_CA" = 1 ] && ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    echo "adding the host's local CA certificates"
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
    chroot "$ROOT" update-ca-certificates
fi

# Slim the image down: package lists, caches, docs.
chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin \
    "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/*
# The sources the image would use with apt-get update inside it.
echo "deb $MIRROR $SUITE main" > "$ROOT/etc/apt/sources.list"

tar -C "$ROOT" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    - "$TAG"
echo "imported $TAG"
