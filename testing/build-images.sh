#!/bin/sh
# Installs what lifeboat's tests need and builds their images offline: no
# image registry is ever contacted. Skips what is already there, so only the
# first run on a machine pays.
#
# Images:
#   lifeboat-test/busybox:1       busybox from Debian's busybox-static, with
#                                 its applet links, for file-level tests
#   lifeboat-test/postgres:15     Debian bookworm's PostgreSQL 15 (pgbench too)
#   lifeboat-test/mariadb:10.11   Debian bookworm's MariaDB 10.11
#   lifeboat-test/redis:7         Debian bookworm's Redis 7
# The database images are made from one debootstrap'd root file system,
# cached as a tarball; their entrypoints (testing/images/) initialise an
# empty data directory from the same environment variables as the official
# images. MongoDB is not built: Debian does not ship it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=/var/cache/lifeboat-test

log() { printf 'build-images: %s\n' "$*" >&2; }

# Debian packages: restic is the independent judge of the repository,
# busybox-static the content of the file-test image, attr sets and reads
# extended attributes on the host side of the tests, tzdata the time zones
# the retention tests count summer time in, tini the init of an image
# whose server is not PID 1.
missing=""
for pkg in restic busybox-static attr debootstrap tzdata tini; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    log "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# restic as its current releases decide retention: since 0.16 a keep rule
# with counts left keeps the oldest snapshot too, which bookworm's 0.14
# does not. lifeboat's forget is compared with it. Taken from Debian's next
# release (a static program), its index checked against Debian's signed
# release file, cached on the machine.
current_restic=$cache/restic-current/restic
fetch_current_restic() {
    if [ -x "$current_restic" ]; then
        return
    fi
    log "fetching restic from Debian trixie"
    mirror=http://deb.debian.org/debian
    dist=$mirror/dists/trixie
    work=$(mktemp -d)
    curl -fsS -o "$work/InRelease" "$dist/InRelease"
    gpgv --quiet --keyring /usr/share/keyrings/debian-archive-keyring.gpg \
        --output "$work/Release" "$work/InRelease" 2>/dev/null
    curl -fsS -o "$work/Packages.xz" "$dist/main/binary-amd64/Packages.xz"
    want=$(awk '/^SHA256:/{s=1; next} /^[^ ]/{s=0} s && $3 == "main/binary-amd64/Packages.xz" {print $1}' "$work/Release")
    echo "$want  $work/Packages.xz" | sha256sum -c --quiet
    xz -d "$work/Packages.xz"
    stanza=$(awk '/^Package: restic$/{p=1} p && /^$/{exit} p' "$work/Packages")
    file=$(printf '%s\n' "$stanza" | sed -n 's/^Filename: //p')
    sum=$(printf '%s\n' "$stanza" | sed -n 's/^SHA256: //p')
    curl -fsS -o "$work/restic.deb" "$mirror/$file"
    echo "$sum  $work/restic.deb" | sha256sum -c --quiet
    dpkg-deb -x "$work/restic.deb" "$work/root"
    mkdir -p "$(dirname "$current_restic")"
    cp "$work/root/usr/bin/restic" "$current_restic.new"
    mv "$current_restic.new" "$current_restic"
    rm -rf "$work"
    log "$("$current_restic" version)"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# An image is current when its recipe label matches the recipe's hash:
# changing an entrypoint or a package list rebuilds the image.
image_current() {
    [ "$(docker image inspect -f '{{index .Config.Labels "lifeboat.test.recipe"}}' "$1" 2>/dev/null)" = "$2" ]
}

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

# A Debian minbase root file system, made once.
base_rootfs() {
    tarball="$cache/bookworm-minbase.tar"
    if [ ! -s "$tarball" ]; then
        log "debootstrap bookworm (once)"
        mkdir -p "$cache"
        dir=$(mktemp -d "$cache/rootfs.XXXXXX")
        debootstrap --variant=minbase bookworm "$dir" >"$cache/debootstrap.log" 2>&1 ||
            { log "debootstrap failed, see $cache/debootstrap.log"; exit 1; }
        tar -C "$dir" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$dir"
    fi
    printf '%s\n' "$tarball"
}

# build_database IMAGE PACKAGES ENTRYPOINT [docker import --change ...]
build_database() {
    image=$1 packages=$2 entrypoint=$3
    shift 3
    recipe=$(printf '%s %s\n' "$packages" "$*" | cat - "$here/images/$entrypoint" | sha256sum | cut -c1-16)
    if image_current "$image" "$recipe"; then
        return
    fi
    log "building $image"
    tarball=$(base_rootfs)
    root=$(mktemp -d "$cache/image.XXXXXX")
    tar -C "$root" -xf "$tarball"
    # No service may start inside the chroot, and PostgreSQL must not make
    # a cluster of its own: the entrypoint makes one in the volume.
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod +x "$root/usr/sbin/policy-rc.d"
    mkdir -p "$root/etc/postgresql-common"
    printf 'create_main_cluster = false\n' > "$root/etc/postgresql-common/createcluster.conf"
    mount -t proc proc "$root/proc"
    if ! chroot "$root" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages" >"$cache/$(echo "$image" | tr '/:' '__').log" 2>&1; then
        umount "$root/proc"
        rm -rf "$root"
        log "installing $packages failed, see $cache"
        exit 1
    fi
    umount "$root/proc"
    rm -f "$root/usr/sbin/policy-rc.d"
    rm -rf "$root/var/lib/apt/lists"/* "$root/var/cache/apt"/*.bin
    install -m 0755 "$here/images/$entrypoint" "$root/usr/local/bin/entrypoint"
    tar -C "$root" -c . | docker import "$@" \
        -c "LABEL lifeboat.test.recipe=$recipe" \
        -c 'ENTRYPOINT ["/usr/local/bin/entrypoint"]' \
        - "$image" >/dev/null
    rm -rf "$root"
    # The image this one replaced, if any, is now untagged.
    docker image prune -f --filter label=lifeboat.test.recipe >/dev/null
}

# Images that run their server as the child of something that stays PID 1,
# made from the PostgreSQL image without a registry: a container of it
# with one file copied in, committed with another entrypoint. The server
# also listens on loopback TCP, as in the images people run.
#   lifeboat-test/postgres-wrapped:15  a shell wrapper, as su or gosu
#                                      scripts are
#   lifeboat-test/postgres-tini:15     tini, as `docker run --init` does
build_derived() {
    image=$1 file=$2 dest=$3 entrypoint=$4
    base=lifeboat-test/postgres:15
    base_id=$(docker image inspect -f '{{.Id}}' "$base")
    recipe=$(printf '%s %s %s\n' "$base_id" "$dest" "$entrypoint" | cat - "$file" | sha256sum | cut -c1-16)
    if image_current "$image" "$recipe"; then
        return
    fi
    log "building $image"
    cid=$(docker create "$base")
    docker cp "$file" "$cid:$dest" >/dev/null
    docker commit \
        -c "LABEL lifeboat.test.recipe=$recipe" \
        -c "ENTRYPOINT $entrypoint" \
        "$cid" "$image" >/dev/null
    docker rm -f "$cid" >/dev/null
    docker image prune -f --filter label=lifeboat.test.recipe >/dev/null
}

fetch_current_restic
build_busybox
build_database lifeboat-test/postgres:15 postgresql-15 postgres-entrypoint.sh \
    -c 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV PGDATA=/var/lib/postgresql/data' \
    -c 'VOLUME /var/lib/postgresql/data'
build_database lifeboat-test/mariadb:10.11 "mariadb-server mariadb-client" mariadb-entrypoint.sh \
    -c 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'VOLUME /var/lib/mysql'
build_database lifeboat-test/redis:7 redis-server redis-entrypoint.sh \
    -c 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'VOLUME /data'
build_derived lifeboat-test/postgres-wrapped:15 "$here/images/wrapped-entrypoint.sh" \
    /usr/local/bin/wrapped-entrypoint '["/usr/local/bin/wrapped-entrypoint"]'
build_derived lifeboat-test/postgres-tini:15 /usr/bin/tini-static /usr/bin/tini \
    '["/usr/bin/tini", "--", "/usr/local/bin/entrypoint", "-c", "listen_addresses=127.0.0.1"]'
log "images ready"
