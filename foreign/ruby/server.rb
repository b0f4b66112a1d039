# Puma (MiniSSL, configured the way `ssl_bind` does) serving WebSocket with one of two stacks:
#   puma-faye   (default) faye-websocket's Rack API, on an EventMachine reactor thread
#   puma-driver websocket-driver on the socket Puma hands over by a full Rack hijack
require 'tmpdir'
require 'fileutils'
require 'puma'
require 'puma/server'
require 'puma/events'
require 'puma/dsl'
require 'puma/minissl'
require 'websocket/driver'

module PeerServer
  VARIANTS = %w[puma-faye puma-driver].freeze

  # Puma reports a failed handshake only to Events#ssl_error, with OpenSSL's words.
  class ReportingEvents < Puma::Events
    def ssl_error(error, ssl_socket)
      port = (ssl_socket.to_io.peeraddr[1] rescue nil)
      Peer.emit('handshake-error', { 'remote_port' => port, 'message' => error.message }.compact)
      super
    end
  end

  # Puma has no handshake-done hook: the first read after OpenSSL left its handshake state is it.
  module HandshakeReport
    def read_nonblock(*args)
      result = super
      mtls_report_handshake
      result
    rescue IO::WaitReadable
      mtls_report_handshake
      raise
    end

    def readpartial(*args)
      result = super
      mtls_report_handshake
      result
    end

    def mtls_report_handshake
      return if @mtls_reported || @engine.init?
      @mtls_reported = true
      Peer.emit('handshake-ok', { 'remote_port' => (@socket.peeraddr[1] rescue nil),
                                  'version' => ssl_version_state[0], 'peer_cn' => Peer.subject_cn(peercert) }.compact)
    end
  end
  Puma::MiniSSL::Socket.prepend(HandshakeReport)

  def self.run(config)
    variant = config['variant'] || 'puma-faye'
    Peer.choose('variant', variant, VARIANTS)
    Peer.choose('tls', config['tls'], %w[any tls12 tls13])
    Peer.choose('profile', config['profile'], %w[default tuned])
    # Puma 5.6's MiniSSL can only raise the floor to TLS 1.1/1.2 (no_tlsv1, no_tlsv1_1).
    Peer.unsupported("tls=#{config['tls']}: puma #{Puma::Const::PUMA_VERSION} has no option to cap or floor " \
                     'the TLS version at 1.2/1.3 (only no_tlsv1, no_tlsv1_1)') unless config['tls'] == 'any'
    max_length = config['profile'] == 'tuned' ? config['max_message'] : nil
    app = variant == 'puma-faye' ? faye_app(max_length) : driver_app(max_length)
    events = ReportingEvents.new($stderr, $stderr)
    server = Puma::Server.new(app, events, min_threads: 0, max_threads: 64)
    server.binder.parse([Puma::DSL.ssl_bind_str('127.0.0.1', config['port'] || 0, bind_options(config))], events)
    Peer.emit('listening', 'port' => server.binder.connected_ports.first)
    server.run.join
  rescue Puma::MiniSSL::SSLError, ArgumentError, Errno::ENOENT => e
    Peer.usage("server settings: #{e.class}: #{e.message}")
  end

  # What a user writes as `ssl_bind host, port, {...}` in config/puma.rb.
  def self.bind_options(config)
    options = { cert: config['chain'], key: config['key'], ca: config['ca'], verify_mode: 'force_peer' }
    if config['crl']
      # MiniSSL has no CRL option; OpenSSL reads CRLs from the ca file, and puma passes
      # verification_flags through, so the CRL goes into a copy of the ca file.
      dir = Dir.mktmpdir('mtls-peer-ruby-')
      Peer::TEMP_DIRS << dir
      combined = File.join(dir, 'ca-and-crl.pem')
      File.write(combined, File.read(config['ca']) + File.read(config['crl']))
      options.merge!(ca: combined, verification_flags: 'CRL_CHECK')
    end
    options
  end

  def self.cell_token(env)
    env['PATH_INFO'].to_s.sub(%r{\A/cell/}, '')
  end

  def self.handler_event(env)
    port = env['REMOTE_PORT'] || (env['puma.socket'].peeraddr[1] rescue nil)
    # peer_cn: the certificate as the application sees it (nil, shown as null, if it cannot)
    Peer.emit('handler', { 'token' => cell_token(env), 'remote_port' => port && port.to_i }.compact
                           .merge('peer_cn' => Peer.subject_cn(env['puma.peercert'])))
  end

  def self.faye_app(max_length)
    require 'faye/websocket'
    require 'eventmachine'
    # faye-websocket needs a running reactor; an exception in a reactor callback (Puma's SSL
    # socket handed to EM.attach, for one) is reported and the reactor keeps running.
    EM.error_handler { |e| Peer.emit('error', 'message' => "#{e.class}: #{e.message}") }
    Thread.new { EM.run }
    options = max_length ? { max_length: max_length } : {}
    lambda do |env|
      next [404, {}, ['WebSocket only']] unless Faye::WebSocket.websocket?(env)
      token = cell_token(env)
      ws = Faye::WebSocket.new(env, nil, options)
      ws.on(:open) { handler_event(env) }
      ws.on(:message) do |event|
        if (command = Peer.close_command(event.data))
          ws.close(*command)
        else
          ws.send(event.data) # String: text, Array of bytes: binary
        end
      end
      ws.on(:close) { |event| Peer.emit('handler-close', 'token' => token, 'code' => event.code, 'reason' => event.reason) }
      ws.on(:error) { |event| Peer.emit('error', 'token' => token, 'message' => event.message) }
      ws.rack_response
    end
  end

  def self.driver_app(max_length)
    require_relative 'driver_echo'
    lambda do |env|
      next [404, {}, ['WebSocket only']] unless WebSocket::Driver.websocket?(env)
      env['rack.hijack'].call
      io = env['rack.hijack_io']
      Thread.new do
        DriverEcho.serve(env, "wss://#{env['HTTP_HOST']}#{env['REQUEST_URI']}", cell_token(env), max_length,
                         read: -> { io.readpartial(65_536) }, write: ->(data) { io.write(data) },
                         close: -> { io.close rescue nil },
                         errors: [EOFError, IOError, SystemCallError, Puma::MiniSSL::SSLError]) { handler_event(env) }
      end
      [-1, {}, []]
    end
  end
end
