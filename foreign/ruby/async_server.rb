# async-http's server (Async::HTTP::Server on an Async::HTTP::Endpoint with an OpenSSL::SSL::SSLContext,
# as the reference's "Attempt 1" set it up) whose application hijacks the HTTP/1.1 connection of a
# WebSocket upgrade and runs websocket-driver on it, in the connection's own task.
require 'async'
require 'async/io/shared_endpoint'
require 'async/http/server'
require 'async/http/endpoint'
require_relative 'driver_echo'

module AsyncPeerServer
  # async-io has no handshake hook: SSLServer#accept runs SSLSocket#accept in the connection's task
  # and lets a failure end that task (logged to stderr). This reports both outcomes, then re-raises.
  module HandshakeReport
    def accept(*args)
      port = (remote_address.ip_port rescue nil)
      Peer.emit('accept', 'remote_port' => port) if port
      super.tap do
        Peer.emit('handshake-ok', { 'remote_port' => port, 'version' => ssl_version, 'cipher' => cipher&.first,
                                    'peer_cn' => Peer.subject_cn(peer_cert) }.compact)
      end
    rescue StandardError => e
      # verify_error: OpenSSL's X509 verify result, which Ruby's message gives only in words
      code = (verify_result rescue 0)
      Peer.emit('handshake-error', { 'remote_port' => port, 'message' => e.message, 'type' => e.class.name,
                                     'verify_error' => (code unless code.zero?) }.compact)
      raise
    end
  end
  Async::IO::SSLSocket.prepend(HandshakeReport)

  def self.run(config)
    Peer.choose('tls', config['tls'], %w[any tls12 tls13])
    Peer.choose('profile', config['profile'], %w[default tuned])
    max_length = config['profile'] == 'tuned' ? config['max_message'] : nil
    endpoint = Async::HTTP::Endpoint.parse("https://127.0.0.1:#{config['port'] || 0}", ssl_context: ssl_context(config))
    Async do
      bound = Async::IO::SharedEndpoint.bound(endpoint)
      Peer.emit('listening', 'port' => bound.wrappers.first.local_address.ip_port)
      Async::HTTP::Server.new(app(max_length), bound, protocol: endpoint.protocol, scheme: endpoint.scheme).run
    end
  rescue OpenSSL::OpenSSLError, ArgumentError, SystemCallError => e
    Peer.usage("server settings: #{e.class}: #{e.message}")
  end

  def self.ssl_context(config)
    context = OpenSSL::SSL::SSLContext.new
    chain = File.read(config['chain']).scan(/-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----/m)
                .map { |pem| OpenSSL::X509::Certificate.new(pem) }
    context.add_certificate(chain.first, OpenSSL::PKey.read(File.read(config['key'])), chain.drop(1))
    store = OpenSSL::X509::Store.new
    store.add_file(config['ca'])
    if config['crl']
      store.add_crl(OpenSSL::X509::CRL.new(File.read(config['crl'])))
      store.flags = OpenSSL::X509::V_FLAG_CRL_CHECK
    end
    context.cert_store = store
    context.verify_mode = OpenSSL::SSL::VERIFY_PEER | OpenSSL::SSL::VERIFY_FAIL_IF_NO_PEER_CERT
    context.max_version = OpenSSL::SSL::TLS1_2_VERSION if config['tls'] == 'tls12'
    context.min_version = OpenSSL::SSL::TLS1_3_VERSION if config['tls'] == 'tls13'
    context
  end

  # Rack's names for the request, which websocket-driver reads; async-http moved `upgrade` into
  # request.protocol.
  def self.rack_env(request)
    env = { 'REQUEST_METHOD' => request.method, 'HTTP_UPGRADE' => Array(request.protocol).join(', ') }
    request.headers.each { |name, value| env["HTTP_#{name.upcase.tr('-', '_')}"] = value.to_s }
    env['HTTP_HOST'] ||= request.authority
    env
  end

  def self.app(max_length)
    lambda do |request|
      env = rack_env(request)
      next Protocol::HTTP::Response[404, {}, ['WebSocket only']] unless request.hijack? && WebSocket::Driver.websocket?(env)
      token = request.path.sub(%r{\A/cell/}, '')
      stream = request.hijack! # an Async::IO::Stream over the Async::IO::SSLSocket
      remote_port = (stream.io.remote_address.ip_port rescue nil)
      DriverEcho.serve(env, "wss://#{request.authority}#{request.path}", token, max_length,
                       read: -> { stream.read_partial(65_536) }, write: ->(data) { stream.write(data) },
                       close: -> { stream.close }, errors: [IOError, SystemCallError, OpenSSL::SSL::SSLError]) do
        # the identity the application can see: the certificate of the TLS socket under the stream
        Peer.emit('handler', { 'token' => token, 'remote_port' => remote_port }.compact
                               .merge('peer_cn' => Peer.subject_cn(stream.io.peer_cert)))
      end
      nil # a full hijack: async-http expects no response
    end
  end
end
