#!/bin/sh
# The sandbox's init: holds the Pod's namespaces open and exits on SIGTERM/SIGINT.
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
