#!/bin/sh
# A line-oriented stand-in for the shop database on :5432: one query per connection.
# Tables live in the writable data directory; the secret table holds $FLAG.
data=/var/lib/postgresql/data
printf 'widget\t3\ngadget\t7\ngizmo\t12\n' > "$data/products"
printf '%s\n' "${FLAG:-missing}" > "$data/secrets"
unset FLAG
echo "db ready on :5432" >&2
/bin/busybox nc -ll -p 5432 -e /app/query.sh &
# As PID 1 the server would ignore SIGTERM; forward it so a stopped session ends at once.
trap 'kill "$child" 2>/dev/null; exit 0' TERM INT
child=$!
wait "$child"
