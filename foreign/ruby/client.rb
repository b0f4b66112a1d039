# Ruby WebSocket clients on EventMachine, one variant per way of giving them TLS settings:
#
#   em-driver-verify-callback  websocket-driver over EM.connect + start_tls(verify_peer: true) with an
#                              ssl_verify_peer callback that verifies the chain against the CA and an
#                              ssl_handshake_completed hostname check (EM's documented way)
#   em-driver-no-callback      the same start_tls options (plus ca_file, which EM does not know and
#                              ignores) without an ssl_verify_peer callback
#   em-driver-noverify         start_tls(verify_peer: false) with the client certificate: INSECURE,
#                              accepts any server; only to observe reference finding 3.2
#   faye-root-cert-file        Faye::WebSocket::Client, tls: {root_cert_file:, cert_chain_file:, private_key_file:}
#   faye-ca-file               Faye::WebSocket::Client, tls: {ca_file:, ...}: the option the reference used,
#                              which faye does not know
require 'eventmachine'
require 'websocket/driver'
require 'faye/websocket'
require 'uri'

module PeerClient
  VARIANTS = %w[em-driver-verify-callback em-driver-no-callback em-driver-noverify faye-root-cert-file faye-ca-file].freeze

  # Common surface of both stacks for the command loop.
  class Session
    attr_reader :id

    def initialize(id)
      @id = id
      @pending_close = false
    end

    def reply(event, fields = {})
      @closed_with = fields if event == 'closed'
      Peer.emit(event, { 'id' => id }.merge(fields))
    end

    # A close command after the connection ended repeats how it ended, as the contract wants a reply.
    def close(command)
      return reply('closed', @closed_with) if @closed_with
      stack_close(command)
    end

    def message(data)
      if data.is_a?(Array) # both stacks hand binary messages over as arrays of bytes
        reply('message', 'type' => 'binary', 'data' => Base64.strict_encode64(data.pack('C*')))
      else
        reply('message', 'type' => 'text', 'data' => data)
      end
    end

    def payload(command)
      command['type'] == 'binary' ? Base64.decode64(command['data']).bytes : command['data']
    end
  end

  # websocket-driver on an EM connection: the connection is the driver's socket (#url, #write).
  module DriverConnection
    attr_accessor :session, :command, :variant, :driver

    def url
      command['url']
    end

    def host
      URI.parse(url).host
    end

    def write(data)
      send_data(data)
    end

    def connection_completed
      @tcp_up = true
      options = { sni_hostname: host, verify_peer: variant != 'em-driver-noverify' }
      if command['cert']
        options[:cert_chain_file] = command['cert']
        options[:private_key_file] = command['key']
      end
      options[:ca_file] = command['ca'] if variant == 'em-driver-no-callback'
      start_tls(options)
    rescue StandardError => e
      fail_with("#{e.class}: #{e.message}", 'tls')
    end

    def ssl_handshake_completed
      if variant == 'em-driver-verify-callback' && !OpenSSL::SSL.verify_certificate_identity(@verified_leaf, host)
        return fail_with("hostname mismatch: the server certificate is not valid for #{host}", 'tls')
      end
      peer = get_peer_cert
      session.reply('handshake-ok', { 'version' => get_cipher_protocol, 'cipher' => get_cipher_name,
                                      'peer_cn' => peer && Peer.subject_cn(peer) }.compact)
      start_driver
    end

    def start_driver
      self.driver = WebSocket::Driver.client(self)
      (command['headers'] || {}).each { |name, value| driver.set_header(name, value) }  # e.g. a bearer token
      driver.on(:open) { @opened = true; session.reply('open') }
      driver.on(:message) { |event| session.message(event.data) }
      driver.on(:close) do |event|
        @closed = true
        session.reply('closed', 'code' => event.code, 'reason' => event.reason)
        close_connection_after_writing
      end
      driver.on(:error) do |event|
        session.reply('error', { 'message' => event.message, 'phase' => @opened ? 'io' : 'upgrade',
                                 'status' => Peer.refused_status(driver.status) }.compact)
      end
      driver.start
    end

    def receive_data(data)
      driver&.parse(data)
    end

    def unbind(reason = nil)
      return if @closed || @failed
      @closed = true
      # EM passes an Errno class (not an instance), or nil for an orderly close
      text = if reason.is_a?(Class) then "#{reason.name}: #{reason.new.message}"
             elsif reason then "#{reason.class}: #{reason.message}"
             else 'connection closed' end
      phase = if @opened then 'io' elsif driver then 'upgrade' elsif @tcp_up then 'tls' else 'tcp' end
      session.reply('error', 'message' => "unbind: #{text}", 'phase' => phase)
    end

    def fail_with(message, phase)
      @failed = true
      session.reply('error', 'message' => message, 'phase' => phase)
      close_connection
    end
  end

  # EM's documented verification: the callback sees each certificate of the chain, issuer side
  # first (the trust anchor included); each must verify against the CA plus the CA certificates
  # verified before it, and the leaf must also be fit for a TLS server (EKU).
  module VerifyCallback
    def ssl_verify_peer(pem)
      @store ||= OpenSSL::X509::Store.new.tap { |store| store.add_file(command['ca']) }
      cert = OpenSSL::X509::Certificate.new(pem)
      is_ca = cert.extensions.any? { |e| e.oid == 'basicConstraints' && e.value.include?('CA:TRUE') }
      context = OpenSSL::X509::StoreContext.new(@store, cert)
      context.purpose = OpenSSL::X509::PURPOSE_SSL_SERVER unless is_ca
      unless context.verify
        fail_with("certificate verify failed: #{context.error_string} (#{context.error})", 'tls')
        return false
      end
      is_ca ? (@store.add_cert(cert) rescue OpenSSL::X509::StoreError) : (@verified_leaf = cert)
      true
    end
  end

  class DriverSession < Session
    def initialize(id, variant, command)
      super(id)
      host, port = URI.parse(command['url']).then { |u| [u.host, u.port] }
      mixins = [DriverConnection]
      mixins << VerifyCallback if variant == 'em-driver-verify-callback'
      @conn = EM.connect(host, port, Module.new { mixins.each { |m| include m } }) do |conn|
        conn.session, conn.command, conn.variant = self, command, variant
        conn.pending_connect_timeout = command['timeout'] if command['timeout']
      end
    end

    def send_message(command)
      data = payload(command)
      data.is_a?(Array) ? @conn.driver.binary(data) : @conn.driver.text(data)
      reply('sent')
    end

    def ping(command)
      @conn.driver.ping(Base64.decode64(command['data'])) { reply('pong', 'data' => command['data']) }
    end

    def stack_close(command)
      return reply('closed', 'code' => 1006, 'reason' => '') unless @conn.driver
      @conn.driver.close(command['reason'], command['code'])
    end
  end

  # faye has no event for a completed TLS handshake: its client hears of it from EM
  # (ssl_handshake_completed, where faye checks the hostname), so the session reports it from there
  # unless that check closed the connection. A server that refuses the client certificate after the
  # client's handshake (TLS 1.3) is then seen at the upgrade, as faye's user saw it.
  module FayeHandshake
    attr_accessor :mtls_session

    private

    def ssl_handshake_completed
      super
      return if ready_state == Faye::WebSocket::API::CLOSED
      peer = @stream.get_peer_cert
      mtls_session.reply('handshake-ok', { 'version' => @stream.get_cipher_protocol, 'cipher' => @stream.get_cipher_name,
                                           'peer_cn' => peer && Peer.subject_cn(peer) }.compact)
    end
  end

  class FayeSession < Session
    def initialize(id, variant, command)
      super(id)
      tls = {}
      if command['cert']
        tls[:cert_chain_file] = command['cert']
        tls[:private_key_file] = command['key']
      end
      tls[variant == 'faye-root-cert-file' ? :root_cert_file : :ca_file] = command['ca']
      @ws = Faye::WebSocket::Client.new(command['url'], nil, tls: tls, headers: command['headers'] || {})
      @ws.singleton_class.prepend(FayeHandshake)  # before EM connects: it does on a later tick
      @ws.mtls_session = self
      @ws.on(:open) { @opened = true; reply('open') }
      @ws.on(:message) { |event| message(event.data) }
      @ws.on(:error) do |event|
        reply('error', { 'message' => event.message, 'phase' => (@opened ? 'io' : nil),
                         'status' => Peer.refused_status(@ws.status) }.compact)
      end
      @ws.on(:close) { |event| reply('closed', 'code' => event.code, 'reason' => event.reason) }
    end

    def send_message(command)
      @ws.send(payload(command)) ? reply('sent') : reply('error', 'message' => 'send refused: not open', 'phase' => 'io')
    end

    def ping(command)
      @ws.ping(Base64.decode64(command['data'])) { reply('pong', 'data' => command['data']) }
    end

    def stack_close(command)
      @ws.close(command['code'], command['reason'])
    end
  end

  def self.run(config)
    variant = config['variant']
    Peer.choose('variant', variant, VARIANTS)
    EM.error_handler { |e| Peer.emit('error', 'message' => "#{e.class}: #{e.message}") }
    Thread.new { EM.run }
    sleep 0.01 until EM.reactor_running?
    sessions = {}
    $stdin.each_line do |line|
      next if line.strip.empty?
      command = JSON.parse(line)
      EM.schedule { dispatch(variant, command, sessions) }
    rescue JSON::ParserError => e
      Peer.emit('error', 'message' => "command is not JSON: #{e.message}")
    end
  end

  def self.dispatch(variant, command, sessions)
    name = command['command'] || command['cmd']
    id = command['id']
    if name == 'connect'
      sessions[id] = (variant.start_with?('faye') ? FayeSession : DriverSession).new(id, variant, command)
    elsif !%w[send ping close].include?(name)
      Peer.emit('error', 'id' => id, 'message' => "unknown command #{name.inspect}; valid: connect, send, ping, close")
    elsif !(session = sessions[id])
      Peer.emit('error', 'id' => id, 'message' => 'no connection with this id')
    else
      session.public_send({ 'send' => :send_message, 'ping' => :ping, 'close' => :close }[name], command)
    end
  rescue StandardError => e
    Peer.emit('error', 'id' => id, 'message' => "#{e.class}: #{e.message}")
  end
end
