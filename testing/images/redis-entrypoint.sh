#!/bin/sh
# Test image entrypoint: Redis in the foreground as redis, data in /data,
# listening on the container's loopback only; extra arguments are passed on
# (for example --appendonly yes).
set -eu
mkdir -p /data
chown redis:redis /data
exec setpriv --reuid=redis --regid=redis --init-groups \
    redis-server --dir /data --bind 127.0.0.1 --protected-mode yes "$@"
