"""websockets (asyncio) as a server: serve() with an SSLContext, the echo handler, a token check
in process_request."""

from __future__ import annotations

import ssl

from websockets.asyncio.server import serve

from mtls_matrix.protocol import TUNED_MAX_MESSAGE, ServerHooks, TokenRefused, parse_close_command


def server_authorize(hooks: ServerHooks):
    """process_request for a token-auth listener: the documented place to refuse before the upgrade
    (it returns a response), and to keep the identity for the handler (an attribute of the connection)."""

    def authorize(connection, request):
        try:
            connection.username = hooks.authorize(request.path, request.headers.get("Authorization"))
        except TokenRefused as refused:
            response = connection.respond(refused.status, refused.reason + "\n")
            response.headers["WWW-Authenticate"] = refused.www_authenticate
            return response
        return None

    return authorize


async def server_echo(ws, hooks: ServerHooks) -> None:
    """The handler: report who the client is, echo, close when asked to."""
    path = ws.request.path
    if hooks.tokens_required:
        hooks.opened(path, ws.request.headers, None, identity=ws.username)
    else:  # the client certificate, as asyncio shows it to the application
        hooks.opened(path, ws.request.headers, ws.transport.get_extra_info("peercert"))
    try:
        async for message in ws:
            command = parse_close_command(message)
            if command:
                await ws.close(*command)
                break
            await ws.send(message)
    finally:
        hooks.closed(path, ws.close_code, ws.close_reason)


async def start_server(context: ssl.SSLContext | None, hooks: ServerHooks, profile: str):
    async def handler(ws) -> None:
        await server_echo(ws, hooks)

    options = {"max_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}
    if hooks.tokens_required:
        options["process_request"] = server_authorize(hooks)
    server = await serve(handler, "127.0.0.1", 0, ssl=context, **options)
    return server, server.sockets[0].getsockname()[1]


async def stop_server(server) -> None:
    server.close()
    await server.wait_closed()
