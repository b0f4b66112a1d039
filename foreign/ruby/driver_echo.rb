# The echo protocol (docs/FOREIGN.md) with websocket-driver on a stream an HTTP server handed over
# by a hijack: shared by puma-driver (server.rb) and async-http-driver (async_server.rb).
require 'websocket/driver'

module DriverEcho
  # websocket-driver wants an object with #env (Rack's), #url and #write.
  Socket = Struct.new(:env, :url, :writer) do
    def write(data)
      writer.call(data)
    end
  end

  # Answers the upgrade (101) and echoes until the stream ends: `read` returns the next bytes (nil
  # at EOF), `write` sends, `close` closes the stream; `opened` runs when the driver opens.
  # Blocks the caller; `errors` are the stream's failures, reported as an `error` event unless the
  # close was ours.
  def self.serve(env, url, token, max_length, read:, write:, close:, errors:, &opened)
    driver = WebSocket::Driver.rack(Socket.new(env, url, write), max_length ? { max_length: max_length } : {})
    closed = false
    driver.on(:open) { opened.call }
    driver.on(:message) do |event|
      if (command = Peer.close_command(event.data))
        driver.close(command[1], command[0])
      elsif event.data.is_a?(Array)
        driver.binary(event.data)
      else
        driver.text(event.data)
      end
    end
    driver.on(:close) do |event|
      Peer.emit('handler-close', 'token' => token, 'code' => event.code, 'reason' => event.reason)
      closed = true
      close.call
    end
    driver.on(:error) { |event| Peer.emit('error', 'token' => token, 'message' => event.message) }
    driver.start
    while !closed && (data = read.call)
      driver.parse(data)
    end
  rescue *errors => e
    Peer.emit('error', 'token' => token, 'message' => "#{e.class}: #{e.message}") unless closed
  end
end
