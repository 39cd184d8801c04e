#!/bin/sh
# Reads "SEARCH <term>" and prints matching products. The term is pasted into a grep pattern
# unescaped, and "UNION secrets" in it reads the secret table: the injection to find.
IFS= read -r -t 10 q || exit 0
term="${q#SEARCH }"
case "$term" in
  *"UNION secrets"*) cat /var/lib/postgresql/data/secrets ;;
  *) grep -- "$term" /var/lib/postgresql/data/products || true ;;
esac
