package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The ways a gorilla user hands TLS settings to the client. Each is a variant of the matrix.
var clientVariants = map[string]func(*tls.Config) *websocket.Dialer{
	// Dialer.TLSClientConfig: gorilla runs the handshake, fills ServerName from the URL if empty,
	// and checks the hostname once more itself.
	"dialer-tlsconfig": func(conf *tls.Config) *websocket.Dialer {
		return &websocket.Dialer{TLSClientConfig: conf}
	},
	// NetDialTLSContext with crypto/tls's own dialer: gorilla assumes the handshake is done and
	// TLSClientConfig is ignored; ServerName comes from the dialled address.
	"netdialtlscontext": func(conf *tls.Config) *websocket.Dialer {
		return &websocket.Dialer{NetDialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return (&tls.Dialer{Config: conf}).DialContext(ctx, network, addr)
		}}
	},
	// Dialer.TLSClientConfig with GetClientCertificate instead of Certificates: Go then sends the
	// certificate whatever CA names the server's CertificateRequest lists (with Certificates it
	// sends none when its issuer is not among them).
	"getclientcertificate": func(conf *tls.Config) *websocket.Dialer {
		if len(conf.Certificates) > 0 {
			cert := conf.Certificates[0]
			conf.Certificates = nil
			conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		}
		return &websocket.Dialer{TLSClientConfig: conf}
	},
}

func variantNames() []string {
	return []string{"dialer-tlsconfig", "netdialtlscontext", "getclientcertificate"}
}

type command struct {
	Command        string            `json:"command"`
	Cmd            string            `json:"cmd"`
	ID             json.RawMessage   `json:"id"`
	URL            string            `json:"url"`
	CA             string            `json:"ca"`
	Cert           *string           `json:"cert"`
	Key            *string           `json:"key"`
	ServerHostname *string           `json:"server_hostname"`
	Profile        string            `json:"profile"`
	Timeout        *float64          `json:"timeout"`
	Headers        map[string]string `json:"headers"`
	Type           string            `json:"type"`
	Data           string            `json:"data"`
	Code           int               `json:"code"`
	Reason         string            `json:"reason"`
}

type clientConn struct {
	id        json.RawMessage
	ws        *websocket.Conn
	queue     chan command  // send/ping/close, in the order the harness gave them
	done      chan struct{} // closed when the reader stopped
	closeCode int
	closeText string
	pingID    json.RawMessage
}

var (
	connsMu sync.Mutex
	conns   = map[string]*clientConn{}
)

func reply(id json.RawMessage, event string, fields map[string]any) {
	if fields == nil {
		fields = map[string]any{}
	}
	fields["id"] = id
	emit(event, fields)
}

func runClient(cfg config, stdin *bufio.Reader) {
	if cfg.Variant == "" {
		usage("variant missing; valid: %s", strings.Join(variantNames(), ", "))
	}
	choose("variant", cfg.Variant, variantNames()...)
	for {
		line, err := stdin.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			var cmd command
			if jerr := json.Unmarshal(line, &cmd); jerr != nil {
				emit("error", map[string]any{"message": "command is not JSON: " + jerr.Error()})
			} else {
				dispatch(cfg.Variant, cmd)
			}
		}
		if err != nil {
			return // stdin EOF: the harness is gone or done
		}
	}
}

func dispatch(variant string, cmd command) {
	name := cmd.Command
	if name == "" {
		name = cmd.Cmd
	}
	if name == "connect" {
		go connect(variant, cmd)
		return
	}
	connsMu.Lock()
	conn := conns[string(cmd.ID)]
	connsMu.Unlock()
	switch {
	case name != "send" && name != "ping" && name != "close":
		reply(cmd.ID, "error", map[string]any{"message": "unknown command " + name + "; valid: connect, send, ping, close"})
	case conn == nil:
		reply(cmd.ID, "error", map[string]any{"message": "no open connection with this id"})
	default:
		cmd.Command = name
		conn.queue <- cmd
	}
}

func dialTLS(cmd command) (*tls.Config, error) {
	roots, err := loadPool(cmd.CA)
	if err != nil {
		return nil, err
	}
	conf := &tls.Config{RootCAs: roots}
	if cmd.Cert != nil && cmd.Key != nil {
		cert, err := tls.LoadX509KeyPair(*cmd.Cert, *cmd.Key)
		if err != nil {
			return nil, err
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	if cmd.ServerHostname != nil && *cmd.ServerHostname != "" {
		conf.ServerName = *cmd.ServerHostname
	}
	return conf, nil
}

// phase names where a dial failed, from the error's type and gorilla's sentinel errors.
func phase(err error) string {
	var opErr *net.OpError
	var unknownCA x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var hostErr x509.HostnameError
	var record tls.RecordHeaderError
	switch {
	case errors.Is(err, websocket.ErrBadHandshake):
		return "upgrade"
	case errors.As(err, &unknownCA), errors.As(err, &invalid), errors.As(err, &hostErr), errors.As(err, &record),
		strings.Contains(err.Error(), "tls:"):
		return "tls"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return "tcp"
	}
	return ""
}

// reportHandshake emits handshake-ok the moment the client's own TLS handshake completes, before the
// upgrade: a server that refuses the client certificate after it (TLS 1.3) is then seen at the
// upgrade, as the client saw it. gorilla reports its own handshake through net/http/httptrace; a
// NetDialTLSContext returns the connection its handshake completed.
func reportHandshake(id json.RawMessage, dialer *websocket.Dialer) context.Context {
	done := func(state tls.ConnectionState) { reply(id, "handshake-ok", stateFields(state)) }
	if dial := dialer.NetDialTLSContext; dial != nil {
		dialer.NetDialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			if tlsConn, ok := conn.(*tls.Conn); ok && err == nil {
				done(tlsConn.ConnectionState())
			}
			return conn, err
		}
	}
	return httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		TLSHandshakeDone: func(state tls.ConnectionState, err error) {
			if err == nil {
				done(state)
			}
		},
	})
}

func connect(variant string, cmd command) {
	conf, err := dialTLS(cmd)
	if err != nil {
		reply(cmd.ID, "error", map[string]any{"message": err.Error(), "phase": "tls"})
		return
	}
	dialer := clientVariants[variant](conf)
	ctx := reportHandshake(cmd.ID, dialer)
	if cmd.Timeout != nil {
		dialer.HandshakeTimeout = time.Duration(*cmd.Timeout * float64(time.Second))
	}
	if _, err := url.Parse(cmd.URL); err != nil {
		reply(cmd.ID, "error", map[string]any{"message": err.Error()})
		return
	}
	header := http.Header{} // request headers the scenario asks for (a bearer token), on the upgrade request
	for name, value := range cmd.Headers {
		header.Set(name, value)
	}
	ws, resp, err := dialer.DialContext(ctx, cmd.URL, header)
	if err != nil {
		fields := map[string]any{"message": err.Error()}
		if p := phase(err); p != "" {
			fields["phase"] = p
		}
		if resp != nil {
			fields["status"] = resp.StatusCode
		}
		reply(cmd.ID, "error", fields)
		return
	}
	conn := &clientConn{id: cmd.ID, ws: ws, queue: make(chan command, 4096), done: make(chan struct{})}
	ws.SetPongHandler(func(data string) error {
		reply(conn.pingID, "pong", map[string]any{"data": b64.EncodeToString([]byte(data))})
		return nil
	})
	connsMu.Lock()
	conns[string(cmd.ID)] = conn
	connsMu.Unlock()
	reply(cmd.ID, "open", nil)
	go conn.write()
	conn.read()
}

func (c *clientConn) read() {
	defer close(c.done)
	defer c.ws.Close()
	for {
		kind, data, err := c.ws.ReadMessage()
		if err != nil {
			var closeErr *websocket.CloseError
			if errors.As(err, &closeErr) {
				c.closeCode, c.closeText = closeErr.Code, closeErr.Text
				reply(c.id, "closed", map[string]any{"code": closeErr.Code, "reason": closeErr.Text})
			} else {
				c.closeCode = websocket.CloseAbnormalClosure
				reply(c.id, "error", map[string]any{"message": err.Error(), "phase": "io"})
			}
			return
		}
		if kind == websocket.BinaryMessage {
			reply(c.id, "message", map[string]any{"type": "binary", "data": b64.EncodeToString(data)})
		} else {
			reply(c.id, "message", map[string]any{"type": "text", "data": string(data)})
		}
	}
}

func (c *clientConn) write() {
	for cmd := range c.queue {
		var err error
		deadline := time.Now().Add(30 * time.Second)
		switch cmd.Command {
		case "send":
			if cmd.Type == "binary" {
				var data []byte
				if data, err = b64.DecodeString(cmd.Data); err == nil {
					err = c.ws.WriteMessage(websocket.BinaryMessage, data)
				}
			} else {
				err = c.ws.WriteMessage(websocket.TextMessage, []byte(cmd.Data))
			}
			if err == nil {
				reply(cmd.ID, "sent", nil)
			}
		case "ping":
			var data []byte
			if data, err = b64.DecodeString(cmd.Data); err == nil {
				c.pingID = cmd.ID
				err = c.ws.WriteControl(websocket.PingMessage, data, deadline)
			}
		case "close":
			select {
			case <-c.done: // the peer closed first: repeat what it said
				reply(cmd.ID, "closed", map[string]any{"code": c.closeCode, "reason": c.closeText})
			default:
				// the reader reports the server's answering close as "closed"
				err = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(cmd.Code, cmd.Reason), deadline)
			}
		}
		if err != nil {
			reply(cmd.ID, "error", map[string]any{"message": err.Error(), "phase": "io"})
		}
	}
}
