package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// net/http logs every failed handshake as "http: TLS handshake error from IP:PORT: <Go's error>";
// that line is the only place a plain http.Server shows it, so we read it there.
var handshakeErrorLine = regexp.MustCompile(`^http: TLS handshake error from [^ ]*:(\d+): (.*)$`)

type errorLogWriter struct{}

func (errorLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	if m := handshakeErrorLine.FindStringSubmatch(line); m != nil {
		port, _ := strconv.Atoi(m[1])
		emit("handshake-error", map[string]any{"remote_port": port, "message": m[2]})
	} else {
		fmt.Fprintln(os.Stderr, line)
		emit("error", map[string]any{"message": line})
	}
	return len(p), nil
}

// acceptReporter reports each TCP accept; TLS and HTTP stay net/http's business.
type acceptReporter struct{ net.Listener }

func (l acceptReporter) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		emit("accept", map[string]any{"remote_port": remotePort(conn.RemoteAddr())})
	}
	return conn, err
}

func remotePort(addr net.Addr) int {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.Port
	}
	return 0
}

// crlCheck: crypto/tls has no revocation checking, so a Go server that must honour a CRL does it
// in VerifyPeerCertificate, after the chain was verified. Only leaves the CRL's issuer signed
// are judged by it.
func crlCheck(path string, caPEM []byte) func([][]byte, [][]*x509.Certificate) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		usage("crl %q: %v", path, err)
	}
	if block, _ := pem.Decode(raw); block != nil {
		raw = block.Bytes
	}
	crl, err := x509.ParseRevocationList(raw)
	if err != nil {
		usage("crl %q: %v", path, err)
	}
	signed := false
	for rest := caPEM; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if ca, err := x509.ParseCertificate(block.Bytes); err == nil && crl.CheckSignatureFrom(ca) == nil {
			signed = true
		}
	}
	if !signed {
		usage("crl %q is not signed by a certificate of ca", path)
	}
	return func(_ [][]byte, chains [][]*x509.Certificate) error {
		for _, chain := range chains {
			leaf := chain[0]
			if string(leaf.RawIssuer) != string(crl.RawIssuer) {
				continue
			}
			for _, revoked := range crl.RevokedCertificates {
				if revoked.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
					return fmt.Errorf("certificate revoked: serial %s of %q is on the CRL",
						leaf.SerialNumber, leaf.Subject.CommonName)
				}
			}
		}
		return nil
	}
}

func serverTLS(cfg config) *tls.Config {
	cert, err := tls.LoadX509KeyPair(cfg.Chain, cfg.Key)
	if err != nil {
		usage("chain/key: %v", err)
	}
	caPEM, err := os.ReadFile(cfg.CA)
	if err != nil {
		usage("ca: %v", err)
	}
	pool, err := loadPool(cfg.CA)
	if err != nil {
		usage("ca: %v", err)
	}
	base := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	choose("tls", cfg.TLS, "any", "tls12", "tls13")
	switch cfg.TLS {
	case "tls12":
		base.MaxVersion = tls.VersionTLS12
	case "tls13":
		base.MinVersion = tls.VersionTLS13
	}
	if cfg.CRL != nil && *cfg.CRL != "" {
		base.VerifyPeerCertificate = crlCheck(*cfg.CRL, caPEM)
	}
	// One config per connection, only so the success event can name the remote port.
	// VerifyConnection runs once the client's certificate passed every check.
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		port := remotePort(hello.Conn.RemoteAddr())
		conf := base.Clone()
		conf.GetConfigForClient = nil
		conf.VerifyConnection = func(state tls.ConnectionState) error {
			fields := stateFields(state)
			fields["remote_port"] = port
			emit("handshake-ok", fields)
			return nil
		}
		return conf, nil
	}
	return base
}

func runServer(cfg config) {
	choose("profile", cfg.Profile, "default", "tuned")
	conf := serverTLS(cfg)
	var readLimit int64 // gorilla's default: 0, no limit at all
	if cfg.Profile == "tuned" && cfg.MaxMessage != nil {
		readLimit = *cfg.MaxMessage
	}
	upgrader := websocket.Upgrader{} // library defaults, CheckOrigin included
	mux := http.NewServeMux()
	mux.HandleFunc("/cell/", func(w http.ResponseWriter, r *http.Request) {
		serveCell(w, r, &upgrader, readLimit)
	})
	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.Port))
	if err != nil {
		usage("port %d: %v", cfg.Port, err)
	}
	server := &http.Server{Handler: mux, TLSConfig: conf, ErrorLog: log.New(errorLogWriter{}, "", 0)}
	emit("listening", map[string]any{"port": listener.Addr().(*net.TCPAddr).Port})
	err = server.ServeTLS(acceptReporter{listener}, "", "")
	emit("error", map[string]any{"message": err.Error()})
	os.Exit(1)
}

func serveCell(w http.ResponseWriter, r *http.Request, upgrader *websocket.Upgrader, readLimit int64) {
	token := strings.TrimPrefix(r.URL.Path, "/cell/")
	var peerCN any
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		peerCN = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	port, _ := strconv.Atoi(r.RemoteAddr[strings.LastIndex(r.RemoteAddr, ":")+1:])
	conn, err := upgrader.Upgrade(w, r, nil) // on failure it has answered with an HTTP error
	if err != nil {
		emit("error", map[string]any{"token": token, "message": err.Error()})
		return
	}
	defer conn.Close()
	emit("handler", map[string]any{"token": token, "peer_cn": peerCN, "remote_port": port})
	if readLimit > 0 {
		conn.SetReadLimit(readLimit)
	}
	for {
		kind, data, err := conn.ReadMessage()
		if err != nil {
			var closeErr *websocket.CloseError
			if errors.As(err, &closeErr) {
				emit("handler-close", map[string]any{"token": token, "code": closeErr.Code, "reason": closeErr.Text})
			} else {
				emit("error", map[string]any{"token": token, "message": err.Error()})
			}
			return
		}
		if kind == websocket.TextMessage && strings.HasPrefix(string(data), "__close__ ") {
			parts := strings.SplitN(string(data), " ", 3)
			code, _ := strconv.Atoi(parts[1])
			reason := ""
			if len(parts) > 2 {
				reason = parts[2]
			}
			deadline := time.Now().Add(5 * time.Second)
			if err := conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), deadline); err != nil {
				emit("error", map[string]any{"token": token, "message": err.Error()})
				return
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // wait for the client's reply
			continue
		}
		if err := conn.WriteMessage(kind, data); err != nil {
			emit("error", map[string]any{"token": token, "message": err.Error()})
			return
		}
	}
}

// b64 is shared with the client side.
var b64 = base64.StdEncoding
