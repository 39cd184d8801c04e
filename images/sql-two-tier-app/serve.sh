#!/bin/sh
/bin/busybox httpd -f -v -p 8080 -h /app/www &
# As PID 1 the server would ignore SIGTERM; forward it so a stopped session ends at once.
trap 'kill "$child" 2>/dev/null; exit 0' TERM INT
child=$!
wait "$child"
