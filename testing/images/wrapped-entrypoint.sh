#!/bin/sh
# Runs the image's own entrypoint as a child of this shell, which stays
# PID 1 and passes SIGTERM and SIGINT on (as su does), with the server
# also listening on loopback TCP: how images that wrap their server in su,
# gosu or a script start it.
/usr/local/bin/entrypoint -c listen_addresses=127.0.0.1 "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"
status=$?
# A trapped signal ends the first wait early; the second waits for the end.
if kill -0 "$child" 2>/dev/null; then
    wait "$child"
    status=$?
fi
exit "$status"
