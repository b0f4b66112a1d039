#!/usr/bin/env ruby
# mtls-peer: Ruby WebSocket stacks (Debian's packages) as a foreign peer of mtls-matrix
# (docs/FOREIGN.md). The first stdin line is the JSON config; the process exits at stdin EOF.
require 'json'
require 'openssl'
require 'base64'
require 'fileutils'

module Peer
  OUT = Mutex.new
  TEMP_DIRS = [] # removed at exit: exit! (needed to stop puma's and EM's threads) skips at_exit

  def self.exit_now(code)
    TEMP_DIRS.each { |dir| FileUtils.rm_rf(dir) }
    exit!(code)
  end

  # One event per line, flushed at once: the harness reads line by line.
  def self.emit(event, fields = {})
    line = JSON.generate({ 'event' => event }.merge(fields))
    OUT.synchronize { $stdout.write(line + "\n"); $stdout.flush }
  end

  # A bad config value: name it and the valid choices, exit 2.
  def self.usage(message)
    warn "mtls-peer: #{message}"
    emit('error', 'message' => message)
    exit 2
  end

  def self.choose(name, value, valid)
    usage("#{name} #{value.inspect} is not valid; valid: #{valid.join(', ')}") unless valid.include?(value)
  end

  # A setting the stack cannot express: not a failure of the library, exit 3.
  def self.unsupported(message)
    warn "mtls-peer: unsupported: #{message}"
    emit('error', 'message' => "unsupported: #{message}", 'unsupported' => true)
    exit 3
  end

  def self.subject_cn(cert)
    return nil unless cert
    cert = OpenSSL::X509::Certificate.new(cert) if cert.is_a?(String)
    entry = cert.subject.to_a.find { |name, _, _| name == 'CN' }
    entry && entry[1]
  end

  # The HTTP status that answered the upgrade request instead of 101 (websocket-driver's `status`), if any.
  def self.refused_status(status)
    status.is_a?(Integer) && status != 101 ? status : nil
  end

  def self.close_command(text)
    return nil unless text.is_a?(String) && text.start_with?('__close__ ')
    _, code, reason = text.split(' ', 3)
    [Integer(code), reason.to_s]
  end
end

config = begin
  JSON.parse($stdin.gets || Peer.usage('no config line on stdin'))
rescue JSON::ParserError => e
  Peer.usage("config is not JSON: #{e.message}")
end
Peer.choose('role', config['role'], %w[server client])
Peer.choose('family', config['family'], %w[ws])
$stdout.sync = true

if config['role'] == 'server'
  Thread.new { $stdin.read; Peer.exit_now(0) } # EOF: the harness is gone or done
  Peer.choose('variant', config['variant'] || 'puma-faye', %w[puma-faye puma-driver async-http-driver])
  if config['variant'] == 'async-http-driver'
    require_relative 'async_server'
    AsyncPeerServer.run(config)
  else
    require_relative 'server'
    PeerServer.run(config)
  end
else
  require_relative 'client'
  PeerClient.run(config) # reads commands until EOF
  Peer.exit_now(0)
end
