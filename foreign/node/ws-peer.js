'use strict';
// The `ws` package as an mtls-matrix peer, both roles (docs/FOREIGN.md): the config arrives as
// the first JSON line on stdin; events and replies leave as JSON lines on stdout; EOF on stdin
// ends the process.

const https = require('https');
const tls = require('tls');
const WebSocket = require('ws');
const { emit, errorFields, peerCN, tlsServer, listen, tlsSettings, phaseOf, main, handshakeFields } = require('./common');

const CLOSE_COMMAND = '__close__ ';

// ---------------------------------------------------------------------------------- server

function serve(config) {
  const server = tlsServer(config);
  // a deployment answers plain HTTPS requests too (clients that reuse one session send one before the upgrade)
  server.on('request', (req, res) => res.writeHead(426, { Upgrade: 'websocket' }).end('Upgrade Required'));
  const wss = new WebSocket.WebSocketServer({
    server, ...(config.profile === 'tuned' && config.max_message ? { maxPayload: config.max_message } : {}),
  });
  wss.on('connection', (ws, req) => {
    const token = req.url.split('?')[0].replace(/\/+$/, '').split('/').pop();
    emit({ event: 'handler', token, peer_cn: peerCN(req.socket), remote_port: req.socket.remotePort });
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? null : data.toString();
      if (text !== null && text.startsWith(CLOSE_COMMAND)) {
        const [, code, ...reason] = text.split(' ');
        ws.close(Number(code), reason.join(' '));
        return;
      }
      ws.send(data, { binary: isBinary });
    });
    ws.on('close', (code, reason) => emit({ event: 'handler-close', token, code, reason: reason.toString() }));
    ws.on('error', (err) => emit({ event: 'error', token, ...errorFields(err) }));
  });
  listen(server, config);
}

// ---------------------------------------------------------------------------------- client

// Each documented way to give `ws` the client's TLS settings is a variant.
const VARIANTS = {
  // TLS options straight in the WebSocket options (passed on to https.request / tls.connect)
  'options': (t) => t,
  // an https.Agent carrying the TLS options
  'agent': (t) => ({ agent: new https.Agent({ ...t, keepAlive: false }) }),
  // a tls.SecureContext built by the application
  'secureContext': (t) => {
    const { ca, cert, key, ...rest } = t;
    return { ...rest, secureContext: tls.createSecureContext({ ca, cert, key }) };
  },
};

const connections = new Map();

function connect(variant, command) {
  const id = command.id;
  const state = { tcp: false, secure: false, open: false, ended: false };
  const options = {
    ...VARIANTS[variant](tlsSettings(command)),
    ...(command.timeout ? { handshakeTimeout: Math.round(command.timeout * 1000) } : {}),
    ...(command.profile === 'tuned' ? { maxPayload: 64 * 1024 * 1024 } : {}),
    // request headers the scenario asks for (a bearer token), on the upgrade request
    ...(command.headers && Object.keys(command.headers).length ? { headers: command.headers } : {}),
  };
  let ws;
  try {
    ws = new WebSocket(command.url, options);
  } catch (err) {
    emit({ event: 'error', id, phase: 'tcp', ...errorFields(err) });
    return;
  }
  connections.set(id, ws);
  // The request's socket is where the TLS handshake shows; ws exposes the request only as _req.
  ws._req?.on('socket', (socket) => {
    socket.on('connect', () => { state.tcp = true; });
    socket.on('secureConnect', () => {
      state.tcp = state.secure = true;
      emit({ event: 'handshake-ok', id, ...handshakeFields(socket) });
    });
  });
  ws.on('unexpected-response', (req, res) => {
    state.ended = true;
    emit({ event: 'error', id, phase: 'upgrade', status: res.statusCode, message: `Unexpected server response: ${res.statusCode}`, type: 'Error', code: null });
    req.destroy();
    connections.delete(id);
  });
  ws.on('open', () => { state.open = true; emit({ event: 'open', id }); });
  ws.on('message', (data, isBinary) => emit({
    event: 'message', id, type: isBinary ? 'binary' : 'text', data: isBinary ? Buffer.from(data).toString('base64') : data.toString(),
  }));
  ws.on('pong', (data) => emit({ event: 'pong', id, data: Buffer.from(data).toString('base64') }));
  ws.on('error', (err) => {
    if (state.ended) return;
    emit({ event: 'error', id, phase: phaseOf(err, state), ...errorFields(err) });
  });
  ws.on('close', (code, reason) => {
    connections.delete(id);
    if (state.ended) return;
    state.ended = true;
    if (state.open || !ws._closeFrameReceived) emit({ event: 'closed', id, code, reason: reason.toString() });
  });
}

function command(variant, c) {
  const ws = connections.get(c.id);
  if (c.cmd === 'connect') return connect(variant, c);
  if (c.cmd === 'close') {
    if (!ws || ws.readyState === WebSocket.CLOSED) {
      connections.delete(c.id);
      return emit({ event: 'closed', id: c.id, code: null, reason: null });
    }
    ws.removeAllListeners('close');
    ws.on('close', (code, reason) => {
      connections.delete(c.id);
      emit({ event: 'closed', id: c.id, code, reason: reason.toString() });
    });
    if (ws.readyState === WebSocket.CONNECTING) return ws.terminate();
    return ws.close(c.code, c.reason);
  }
  if (!ws) return emit({ event: 'error', id: c.id, phase: 'io', message: `no open connection ${c.id}`, type: 'Error', code: null });
  if (c.cmd === 'send') {
    const data = c.type === 'binary' ? Buffer.from(c.data, 'base64') : c.data;
    return ws.send(data, { binary: c.type === 'binary' }, (err) => emit(err
      ? { event: 'error', id: c.id, phase: 'io', ...errorFields(err) } : { event: 'sent', id: c.id }));
  }
  if (c.cmd === 'ping') return ws.ping(Buffer.from(c.data || '', 'base64'));
  return emit({ event: 'error', id: c.id, phase: 'io', message: `unknown command ${c.cmd}`, type: 'Error', code: null });
}

// ---------------------------------------------------------------------------------- main

main({ serve, variants: VARIANTS, command });
