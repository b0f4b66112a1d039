"""aiohttp as a server: a web.Application on an AppRunner, its TCPSite given an SSLContext, the echo
handler a WebSocketResponse; a token-auth server refuses before ws.prepare, i.e. before the upgrade."""

from __future__ import annotations

import ssl

from aiohttp import WSMsgType, web

from mtls_matrix.protocol import TUNED_MAX_MESSAGE, ServerHooks, TokenRefused, parse_close_command


async def server_echo(request: web.Request, hooks: ServerHooks, profile: str) -> web.WebSocketResponse:
    """The handler: refuse a bad token, report who the client is, echo, close when asked to."""
    path = request.path_qs
    if hooks.tokens_required:  # refused here, before ws.prepare: an HTTP 401, no upgrade
        try:
            identity = hooks.authorize(path, request.headers.get("Authorization"))
        except TokenRefused as refused:
            raise web.HTTPUnauthorized(text=refused.reason,
                                       headers={"WWW-Authenticate": refused.www_authenticate}) from None
        hooks.opened(path, request.headers, None, identity=identity)
    else:  # the client certificate, as asyncio shows it to the application
        hooks.opened(path, request.headers, request.transport.get_extra_info("peercert"))
    ws = web.WebSocketResponse(**({"max_msg_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}))
    await ws.prepare(request)
    reason = None  # aiohttp exposes a received close reason only on the CLOSE message
    try:
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                command = parse_close_command(msg.data)
                if command:
                    # close_code becomes the code of the client's reply; its reason is dropped
                    await ws.close(code=command[0], message=command[1].encode())
                    break
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            else:  # CLOSE (autoclose already replied), CLOSING, CLOSED, ERROR
                if msg.type is WSMsgType.CLOSE:
                    reason = msg.extra
                break
    finally:
        hooks.closed(path, ws.close_code, reason)
    return ws


async def start_server(context: ssl.SSLContext | None, hooks: ServerHooks, profile: str, **runner_options):
    """runner_options: more web.AppRunner settings (the matrix passes a short shutdown_timeout: it does
    not wait aiohttp's 60 s for the handlers still running when it stops a server)."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        return await server_echo(request, hooks, profile)

    app = web.Application()
    app.router.add_get("/cell/{token}", handler)
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    return runner, runner.addresses[0][1]


async def stop_server(runner: web.AppRunner) -> None:
    await runner.cleanup()
