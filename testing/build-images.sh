#!/bin/sh
# Installs what lifeboat's tests need and builds their images offline: no
# image registry is ever contacted. Skips what is already there, so only the
# first run on a machine pays.
#
# Images:
#   lifeboat-test/busybox:1   busybox from Debian's busybox-static, with its
#                             applet links, for file-level tests
set -eu

log() { printf 'build-images: %s\n' "$*" >&2; }

# Debian packages: restic is the independent judge of the repository,
# busybox-static the content of the file-test image, attr sets and reads
# extended attributes on the host side of the tests.
missing=""
for pkg in restic busybox-static attr; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    log "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

build_busybox() {
    image=lifeboat-test/busybox:1
    if image_exists "$image"; then
        return
    fi
    log "building $image"
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
    printf 'root:x:0:\n' > "$root/etc/group"
    tar -C "$root" -c . | docker import \
        -c 'ENV PATH=/bin' \
        -c 'CMD ["/bin/sh"]' \
        - "$image" >/dev/null
    rm -rf "$root"
    trap - EXIT
}

build_busybox
log "images ready"
