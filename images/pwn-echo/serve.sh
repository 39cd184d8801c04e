#!/bin/sh
# Socket server: one forked handler per connection (busybox nc -ll -e).
port=1337 timeout=60
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
export ECHO_TIMEOUT="$timeout"
echo "pwn-echo listening on :$port" >&2
/bin/busybox nc -ll -p "$port" -e /app/echo.sh &
# As PID 1 the server would ignore SIGTERM; forward it so a stopped session ends at once.
trap 'kill "$child" 2>/dev/null; exit 0' TERM INT
child=$!
wait "$child"
