#!/bin/sh
# Builds the gorilla/websocket peer offline, against Debian's golang-github-gorilla-websocket-dev
# (go.mod replaces the module with /usr/share/gocode). Output: $1, default ./build/mtls-peer-go.
set -eu
cd "$(dirname "$0")"
out="${1:-build/mtls-peer-go}"
export GOFLAGS=-mod=mod GOPROXY=off GOSUMDB=off GO111MODULE=on
export GOCACHE="${GOCACHE:-${TMPDIR:-/tmp}/mtls-matrix-gocache}"
go build -trimpath -o "$out" ./mtls-peer
