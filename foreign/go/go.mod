module mtls-matrix/foreign/go

go 1.19

require github.com/gorilla/websocket v1.5.0

// Built offline from Debian's golang-github-gorilla-websocket-dev (see build.sh).
replace github.com/gorilla/websocket => /usr/share/gocode/src/github.com/gorilla/websocket
