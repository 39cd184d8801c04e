#!/bin/sh
# Echoes each line back. A line holding a format directive "leaks" the flag file, standing in
# for the format-string bug of the real challenge.
echo "Echo Chamber. Say something."
while IFS= read -r -t "${ECHO_TIMEOUT:-60}" line; do
  case "$line" in
    *%s*|*%p*|*%x*) cat /home/ctf/flag.txt 2>/dev/null || echo "(no flag file)"; echo ;;
    *) printf '%s\n' "$line" ;;
  esac
done
