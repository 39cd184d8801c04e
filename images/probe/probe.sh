#!/bin/sh
# Network probe for tests: for each "name=host:port" in $PROBE_TARGETS, tries a TCP connection
# (2 s connect timeout) and logs "PROBE round=N name open|closed", every $PROBE_INTERVAL seconds.
# Serves :8080 so its session becomes ready. Each "host:port/path" in $FETCH_URLS is fetched
# over HTTP/1.0 with nc (busybox's static wget resolves through glibc NSS, absent here) and
# the response logged on one line.
/bin/busybox httpd -p 8080 -h /app/www
round=0
while :; do
  round=$((round + 1))
  for t in $PROBE_TARGETS; do
    name="${t%%=*}" addr="${t#*=}"
    timeout 4 /bin/busybox nc -w 2 "${addr%:*}" "${addr##*:}" </dev/null >/dev/null 2>&1
    if [ $? -eq 1 ]; then r=closed; else r=open; fi
    echo "PROBE round=$round $name $r"
  done
  for u in $FETCH_URLS; do
    hostport="${u%%/*}" path="/${u#*/}"
    body=$(printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "${hostport%:*}" | timeout 6 /bin/busybox nc -w 4 "${hostport%:*}" "${hostport##*:}" 2>&1 | tr '\r\n' '  ')
    echo "FETCH round=$round $u $body"
  done
  echo "PROBE round=$round done"
  sleep "${PROBE_INTERVAL:-3}"
done
