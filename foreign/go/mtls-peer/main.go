// mtls-peer: gorilla/websocket as a foreign peer of mtls-matrix (docs/FOREIGN.md).
//
// The first stdin line is the JSON config; the role decides what follows. The process exits
// when stdin reaches EOF, so it never outlives the harness.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
)

type config struct {
	Role       string  `json:"role"`
	Family     string  `json:"family"`
	Port       int     `json:"port"`
	Chain      string  `json:"chain"`
	Key        string  `json:"key"`
	CA         string  `json:"ca"`
	CRL        *string `json:"crl"`
	TLS        string  `json:"tls"`
	Profile    string  `json:"profile"`
	MaxMessage *int64  `json:"max_message"`
	Variant    string  `json:"variant"`
}

var (
	outMu sync.Mutex
	out   = bufio.NewWriter(os.Stdout)
)

// emit writes one event as a JSON line and flushes it at once: the harness reads line by line.
func emit(event string, fields map[string]any) {
	if fields == nil {
		fields = map[string]any{}
	}
	fields["event"] = event
	line, err := json.Marshal(fields)
	if err != nil {
		line = []byte(fmt.Sprintf(`{"event":"error","message":%q}`, err.Error()))
	}
	outMu.Lock()
	defer outMu.Unlock()
	out.Write(line)
	out.WriteByte('\n')
	out.Flush()
}

// usage reports a bad config value with the valid choices and exits 2, as every peer does.
func usage(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stderr, "mtls-peer:", msg)
	emit("error", map[string]any{"message": msg})
	os.Exit(2)
}

func choose(name, value string, valid ...string) {
	for _, v := range valid {
		if v == value {
			return
		}
	}
	usage("%s %q is not valid; valid: %s", name, value, strings.Join(valid, ", "))
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1"
	}
	return fmt.Sprintf("0x%04x", v)
}

func stateFields(state tls.ConnectionState) map[string]any {
	fields := map[string]any{
		"version": tlsVersionName(state.Version),
		"cipher":  tls.CipherSuiteName(state.CipherSuite),
	}
	if len(state.PeerCertificates) > 0 {
		fields["peer_cn"] = state.PeerCertificates[0].Subject.CommonName
	}
	return fields
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", path)
	}
	return pool, nil
}

func main() {
	stdin := bufio.NewReaderSize(os.Stdin, 1<<20)
	first, err := stdin.ReadBytes('\n')
	if err != nil && len(first) == 0 {
		usage("no config line on stdin: %v", err)
	}
	var cfg config
	if err := json.Unmarshal(first, &cfg); err != nil {
		usage("config is not JSON: %v", err)
	}
	choose("role", cfg.Role, "server", "client")
	choose("family", cfg.Family, "ws")
	if cfg.Role == "server" {
		go func() { // the rest of stdin only matters for its EOF: then we exit
			buf := make([]byte, 4096)
			for {
				if _, err := stdin.Read(buf); err != nil {
					os.Exit(0)
				}
			}
		}()
		runServer(cfg)
		return
	}
	runClient(cfg, stdin)
	os.Exit(0)
}
