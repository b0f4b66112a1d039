'use strict';
// `socket.io` (server) and `socket.io-client` (client) as mtls-matrix peers of the socketio family
// (docs/FOREIGN.md). The echo protocol is the Python socketio peers' (peers/socketio.py): the cell
// token in the `auth` payload ({cell}); "echo" acknowledged with the data; "bye" {code, reason}
// acknowledged before the client disconnects; "close" {code, reason} makes the server disconnect
// the client.

const https = require('https');
const tls = require('tls');
const { Server } = require('socket.io');
const { io } = require('socket.io-client');
const { emit, errorFields, peerCN, tlsServer, listen, tlsSettings, phaseOf, main, handshakeFields } = require('./common');

const CLOSE_COMMAND = '__close__ ';

// ---------------------------------------------------------------------------------- server

// The client identity as the application can see it: the TLS socket of the request that opened
// the Engine.IO session (socket.request). Node returns null once that socket is gone.
function identity(socket) {
  const conn = socket.request.socket;
  if (!conn || !conn.getPeerCertificate) {
    return { peer_cn: null, identity_error: 'socket.request.socket has no getPeerCertificate' };
  }
  if (conn.getPeerCertificate() === null) {
    return { peer_cn: null, identity_error: 'socket.request.socket.getPeerCertificate() returned null: '
      + 'the connection of the request that opened the session is closed' };
  }
  return { peer_cn: peerCN(conn), identity_error: null };
}

function serve(config) {
  const server = tlsServer(config);
  const sio = new Server(server, {
    serveClient: false, ...(config.profile === 'tuned' && config.max_message ? { maxHttpBufferSize: config.max_message } : {}),
  });
  sio.on('connection', (socket) => {
    const token = (socket.handshake.auth && socket.handshake.auth.cell) || null;
    let bye = null;
    let echoed = false;
    const transport = () => socket.conn.transport.name;
    let reported = transport(); // the transport last reported
    emit({ event: 'handler', token, ...identity(socket), transport: reported, remote_port: socket.request.socket?.remotePort });
    socket.on('echo', (data, ack) => {
      if (!echoed || reported !== transport()) { // the first echo, or an upgrade since
        echoed = true;
        reported = transport();
        emit({ event: 'transport', token, transport: reported });
      }
      if (typeof ack === 'function') ack(data);
    });
    socket.on('bye', (data, ack) => {
      bye = data || {};
      if (typeof ack === 'function') ack(true); // the client disconnects once the server holds code and reason
    });
    socket.on('close', () => socket.disconnect(true));
    socket.on('disconnect', (reason) => emit({
      event: 'handler-close', token,
      ...(bye && reason === 'client namespace disconnect' ? { code: bye.code, reason: bye.reason } : { code: null, reason }),
    }));
    socket.on('error', (err) => emit({ event: 'error', token, ...errorFields(err) }));
  });
  sio.engine.on('connection_error', (err) => emit({ event: 'error', message: `${err.message} (${err.code})`, code: null, type: 'Error' }));
  listen(server, config);
}

// ---------------------------------------------------------------------------------- client

// The documented TLS options (ca, cert, key; rejectUnauthorized is already true by default),
// with the transports of each variant: engine.io-client's default is polling, then websocket.
// `agent`: the same options plus a keep-alive https.Agent (the documented `agent` option). Without
// one, polling in Node (xmlhttprequest-ssl) passes agent: false to https.request: every HTTP
// request is a new TLS connection, closed after its response.
const VARIANTS = {
  'options+polling': { transports: ['polling'] },
  'options+websocket': { transports: ['websocket'] },
  'options+upgrade': { transports: ['polling', 'websocket'] },
  'agent+polling': { transports: ['polling'], agent: true },
};

const connections = new Map();
// socket.io-client shows no socket: the TLS sockets its transports open (xmlhttprequest-ssl for
// polling, ws for websocket, both through tls.connect) are found by the connection's own `ca`
// Buffer, which both pass on to tls.connect unchanged.
const byCa = new WeakMap();
const tlsConnect = tls.connect;
tls.connect = function connect(...args) {
  const socket = tlsConnect.apply(this, args);
  const options = args.find((a) => a && typeof a === 'object' && !Buffer.isBuffer(a));
  const state = options && options.ca ? byCa.get(options.ca) : undefined;
  if (state) watch(socket, state);
  return socket;
};

function watch(socket, state) {
  socket.on('connect', () => { state.tcp = true; });
  socket.on('secureConnect', () => {
    state.tcp = state.secure = true;
    if (!state.handshakeReported) {
      state.handshakeReported = true;
      emit({ event: 'handshake-ok', id: state.id, ...handshakeFields(socket) });
    }
  });
  socket.on('error', (err) => { state.tlsError = state.tlsError || err; });
}

// What socket.io-client tells the application (err.message, err.description), unedited, with
// what Node's TLS socket underneath knew (its err.code) as the error code.
function connectError(state, err) {
  const description = err && err.description;
  const inner = description && typeof description === 'object' ? (description.error || description) : null;
  const words = description === undefined ? '' : `: ${inner && inner.message !== undefined ? inner.message : String(description)}`;
  const underneath = state.tlsError || (inner && inner.code ? inner : null);
  return {
    event: 'error', id: state.id, phase: phaseOf(underneath || err, state),
    message: `${err && err.message}${words}`, type: (err && (err.type || err.name)) || 'Error',
    code: (underneath && underneath.code) || null, verify_error: state.tlsError ? state.tlsError.message : null,
  };
}

// The kept-alive sockets of an `agent` variant end with the session, once its last requests (the
// DISCONNECT and CLOSE packets) are out.
function release(state) {
  if (state.agent) setTimeout(() => state.agent.destroy(), 1000).unref();
}

function connect(variant, command) {
  const id = command.id;
  const url = new URL(command.url.replace(/^ws/, 'http'));
  const token = url.pathname.replace(/\/+$/, '').split('/').pop();
  // the query goes to the server on every request (a scenario's ?token=), except the namespace,
  // which socket.io-client takes from the path
  const namespace = url.searchParams.get('namespace') || '/';
  url.searchParams.delete('namespace');
  const target = url.origin + (namespace === '/' ? '' : namespace) + url.search;
  const state = { id, tcp: false, secure: false, open: false, ended: false, asked: null };
  const tlsOptions = tlsSettings(command);
  byCa.set(tlsOptions.ca, state);
  const { transports, agent } = VARIANTS[variant];
  if (agent) state.agent = new https.Agent({ ...tlsOptions, keepAlive: true });
  const socket = io(target, {
    ...tlsOptions, transports, auth: { cell: token, ...(command.auth || {}) }, extraHeaders: command.headers || {},
    ...(agent ? { agent: state.agent } : {}),
    forceNew: true, reconnection: false, // a reconnect after its cell would belong to no cell
    ...(command.timeout ? { timeout: Math.round(command.timeout * 1000) } : {}),
  });
  state.socket = socket;
  socket.on('disconnect', () => release(state));
  connections.set(id, state);
  const fail = (event) => {
    if (state.ended) return;
    state.ended = true;
    connections.delete(id);
    socket.disconnect();
    release(state);
    emit(event);
  };
  const opened = () => {
    state.open = true;
    emit({ event: 'open', id, transport: socket.io.engine.transport.name });
  };
  socket.on('connect', () => {
    const engine = socket.io.engine;
    if (!transports.includes('websocket') || engine.transport.name === 'websocket') return opened();
    // engine.io-client upgrades after the session opened, in the background, and drops a failed
    // upgrade silently (it carries on polling): wait for the outcome, as the Python clients do
    const timer = setTimeout(() => noUpgrade('no upgrade within the timeout'), (command.timeout || 10) * 1000);
    const noUpgrade = (why) => {
      clearTimeout(timer);
      fail({ event: 'error', id, phase: 'upgrade', type: 'NoUpgrade', code: null,
        message: `asked to upgrade to websocket, the session stayed on ${engine.transport.name} (${why})` });
    };
    engine.once('upgrade', () => { clearTimeout(timer); opened(); });
    engine.once('upgradeError', (err) => noUpgrade(`upgradeError: ${err && err.message}` +
      (err && err.description ? `: ${err.description.message || err.description}` : '')));
  });
  socket.on('connect_error', (err) => fail(connectError(state, err)));
  socket.on('disconnect', (reason) => {
    if (state.ended) return;
    state.ended = true;
    connections.delete(id);
    const asked = state.asked && reason === 'io server disconnect' ? state.asked : null;
    emit({ event: 'closed', id, code: asked ? asked.code : null, reason: asked ? asked.reason : reason });
  });
}

function send(state, c) {
  const socket = state.socket;
  const data = c.type === 'binary' ? Buffer.from(c.data, 'base64') : c.data;
  if (c.type === 'text' && data.startsWith(CLOSE_COMMAND)) {
    const [, code, ...reason] = data.split(' ');
    state.asked = { code: Number(code), reason: reason.join(' ') };
    socket.emit('close', state.asked);
  } else {
    socket.emit('echo', data, (echo) => emit(Buffer.isBuffer(echo)
      ? { event: 'message', id: c.id, type: 'binary', data: echo.toString('base64') }
      : { event: 'message', id: c.id, type: 'text', data: String(echo) }));
  }
  emit({ event: 'sent', id: c.id });
}

function close(state, c) {
  const done = () => emit({ event: 'closed', id: c.id, code: c.code, reason: c.reason });
  connections.delete(c.id);
  if (!state || state.ended) return emit({ event: 'closed', id: c.id, code: null, reason: null });
  state.ended = true;
  const socket = state.socket;
  // the harness gave up on this connection: drop it now, it must answer at once
  if (!socket.connected || c.reason === 'abandoned') {
    socket.disconnect();
    return done();
  }
  // Socket.IO's disconnect carries no code or reason: the app tells the server first
  socket.timeout(5000).emit('bye', { code: c.code, reason: c.reason }, () => {
    socket.disconnect();
    done();
  });
}

function command(variant, c) {
  const state = connections.get(c.id);
  if (c.cmd === 'connect') return connect(variant, c);
  if (c.cmd === 'close') return close(state, c);
  if (!state || !state.open) return emit({ event: 'error', id: c.id, phase: 'io', message: `no open connection ${c.id}`, type: 'Error', code: null });
  if (c.cmd === 'send') return send(state, c);
  if (c.cmd === 'ping') return emit({ event: 'error', id: c.id, phase: 'io', message: 'Socket.IO has no application ping', type: 'Error', code: null });
  return emit({ event: 'error', id: c.id, phase: 'io', message: `unknown command ${c.cmd}`, type: 'Error', code: null });
}

main({ serve, variants: VARIANTS, command });
