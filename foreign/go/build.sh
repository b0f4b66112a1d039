#!/bin/sh
# Builds the gorilla/websocket peer offline, against Debian's golang-github-gorilla-websocket-dev
# (go.mod replaces the module with /usr/share/gocode). Output: $1, default ./build/mtls-peer-go.
# The build cache is this build's own, made by mktemp and removed on exit (a fixed path in a
# shared temp dir could be made first by another user), unless GOCACHE names one.
set -eu
cd "$(dirname "$0")"
out="${1:-build/mtls-peer-go}"
export GOFLAGS=-mod=mod GOPROXY=off GOSUMDB=off GO111MODULE=on
if [ -z "${GOCACHE:-}" ]; then
    GOCACHE="$(mktemp -d "${TMPDIR:-/tmp}/mtls-peer-go-cache.XXXXXXXX")"
    export GOCACHE
    trap 'rm -rf "$GOCACHE"' EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
fi
go build -trimpath -o "$out" ./mtls-peer
