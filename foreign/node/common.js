'use strict';
// What the Node peers (ws-peer.js, socketio-peer.js) share: the contract's plumbing
// (docs/FOREIGN.md) and Node's TLS server with its events.

const fs = require('fs');
const https = require('https');
const readline = require('readline');

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function errorFields(err) {
  return { message: String(err && err.message), code: (err && err.code) || null, type: (err && err.name) || 'Error' };
}

function peerCN(socket) {
  const cert = socket && socket.getPeerCertificate ? socket.getPeerCertificate() : null;
  return cert && cert.subject ? (cert.subject.CN ?? null) : null;
}

function handshakeFields(socket) {
  return { version: socket.getProtocol(), cipher: (socket.getCipher() || {}).name || null, peer_cn: peerCN(socket) };
}

// An https server that requires and verifies the client certificate, reporting its TLS events.
function tlsServer(config) {
  const options = {
    cert: fs.readFileSync(config.chain), key: fs.readFileSync(config.key), ca: fs.readFileSync(config.ca),
    requestCert: true, rejectUnauthorized: true,
  };
  if (config.crl) options.crl = fs.readFileSync(config.crl);
  if (config.tls === 'tls12') options.maxVersion = 'TLSv1.2';
  if (config.tls === 'tls13') options.minVersion = 'TLSv1.3';
  const server = https.createServer(options);
  server.on('connection', (socket) => emit({ event: 'accept', remote_port: socket.remotePort }));
  server.on('secureConnection', (socket) => emit({ event: 'handshake-ok', remote_port: socket.remotePort, ...handshakeFields(socket) }));
  // Node verifies the client certificate after OpenSSL's handshake and, with rejectUnauthorized,
  // destroys the socket: the application then gets 'tlsClientError' "socket hang up", and the
  // reason only in socket.authorizationError.
  server.on('tlsClientError', (err, socket) => emit({
    event: 'handshake-error', remote_port: socket.remotePort ?? socket._parent?.remotePort,
    verify_error: socket.authorizationError || null, ...errorFields(err),
  }));
  server.on('error', (err) => emit({ event: 'error', ...errorFields(err) }));
  return server;
}

function listen(server, config) {
  server.listen(config.port || 0, '127.0.0.1', () => emit({ event: 'listening', port: server.address().port }));
}

// The client's TLS settings from a `connect` command, as Node's TLS options.
function tlsSettings(command) {
  const t = { ca: fs.readFileSync(command.ca) };
  if (command.cert) {
    t.cert = fs.readFileSync(command.cert);
    t.key = fs.readFileSync(command.key);
  }
  return t;
}

const TLS_CODES = /^(ERR_SSL|ERR_TLS|CERT_|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|HOSTNAME|INVALID_PURPOSE|EPROTO)/;

function phaseOf(err, state) {
  if (state.open) return 'io';
  if (TLS_CODES.test((err && err.code) || '')) return 'tls';
  if (!state.tcp) return 'tcp';
  return state.secure ? 'upgrade' : 'tls';
}

// The main loop: the config line, then (client) one command per line; stdin EOF ends the process.
function main({ serve, variants, command }) {
  let config = null;
  const input = readline.createInterface({ input: process.stdin });
  input.on('line', (line) => {
    if (!line.trim()) return;
    const message = JSON.parse(line);
    if (config === null) {
      config = message;
      if (config.role === 'server') serve(config);
      else if (!variants[config.variant]) {
        process.stderr.write(`unknown variant ${config.variant}; valid: ${Object.keys(variants).join(', ')}\n`);
        process.exit(2);
      }
      return;
    }
    command(config.variant, message);
  });
  input.on('close', () => process.exit(0));
}

module.exports = { emit, errorFields, peerCN, handshakeFields, tlsServer, listen, tlsSettings, phaseOf, main };
