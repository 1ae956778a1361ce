"""aiocoap as the peer of coap-proto's interop tests (tests/interop.rs).

    python3 aiocoap_peer.py server PORT   # serves /hello, /store, /async?N and the
                                          # observable /counter on 127.0.0.1
    python3 aiocoap_peer.py client BASE   # runs every scenario against BASE, e.g.
                                          # coap://127.0.0.1:5683 (a coap-server)

The client prints one line per scenario, "PASS name" or "FAIL name: why", and exits 1
if any failed. It is an aiocoap application with aiocoap's defaults: aiocoap 0.4 hands a
4.01 Unauthorized with Echo (RFC 9175 §2.3) to the application rather than repeating the
request, and this client does not repeat it either, so a server that challenges fails
the scenario. It ends with "ECHO n": how many 4.01 answers with Echo it got.
"""
import asyncio
import sys

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.codes import Code

BIG = bytes((i * 7) % 251 for i in range(5000))


class Hello(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(code=Code.CONTENT, payload=b"hello from aiocoap")


class Store(resource.Resource):
    """GET, PUT, POST, DELETE of one body; starts as 5000 bytes (block-wise)."""

    def __init__(self):
        super().__init__()
        self.body = BIG

    async def render_get(self, request):
        if self.body is None:
            return aiocoap.Message(code=Code.NOT_FOUND)
        return aiocoap.Message(code=Code.CONTENT, payload=self.body)

    async def render_put(self, request):
        created = self.body is None
        self.body = request.payload
        return aiocoap.Message(code=Code.CREATED if created else Code.CHANGED)

    async def render_post(self, request):
        return await self.render_put(request)

    async def render_delete(self, request):
        self.body = None
        return aiocoap.Message(code=Code.DELETED)


class Async(resource.Resource):
    async def render_get(self, request):
        delay = float(request.opt.uri_query[0]) if request.opt.uri_query else 1.0
        await asyncio.sleep(delay)
        return aiocoap.Message(code=Code.CONTENT, payload=b"Async Complete!")


class Counter(resource.ObservableResource):
    """Observable: counts up every 200 ms and notifies its observers (RFC 7641)."""

    def __init__(self):
        super().__init__()
        self.count = 0
        asyncio.get_running_loop().call_later(0.2, self.tick)

    def tick(self):
        self.count += 1
        self.updated_state()
        asyncio.get_running_loop().call_later(0.2, self.tick)

    async def render_get(self, request):
        return aiocoap.Message(code=Code.CONTENT, payload=str(self.count).encode())


async def serve(port):
    site = resource.Site()
    site.add_resource(["hello"], Hello())
    site.add_resource(["store"], Store())
    site.add_resource(["async"], Async())
    site.add_resource(["counter"], Counter())
    await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port))
    print("ready", flush=True)
    await asyncio.get_running_loop().create_future()


async def run_client(base):
    ctx = await aiocoap.Context.create_client_context()
    failures = 0
    echoed = 0

    async def ask(msg):
        """The request's response, as aiocoap gives it (a 4.01 with Echo is counted)."""
        nonlocal echoed
        pr = ctx.request(msg)
        resp = await asyncio.wait_for(pr.response, 30)
        if resp.code == Code.UNAUTHORIZED and resp.opt.echo is not None:
            echoed += 1
        return pr, resp

    async def check(name, code, uri, expect_code, payload=b"", expect_payload=None, mtype=aiocoap.CON, query=None):
        nonlocal failures
        msg = aiocoap.Message(code=code, uri=base + uri, payload=payload, mtype=mtype)
        try:
            _, resp = await ask(msg)
        except Exception as e:  # noqa: BLE001 - any failure is a failed scenario
            print(f"FAIL {name}: {e!r}", flush=True)
            failures += 1
            return
        if resp.code != expect_code or (expect_payload is not None and resp.payload != expect_payload):
            print(f"FAIL {name}: got {resp.code} with {len(resp.payload)} bytes", flush=True)
            failures += 1
        else:
            print(f"PASS {name}", flush=True)

    await check("GET", Code.GET, "/", Code.CONTENT)
    await check("GET /example_data (1500 bytes)", Code.GET, "/example_data", Code.CONTENT,
                expect_payload=bytes(b"abcdefghijklmnopqrstuvwxyz"[i % 26] for i in range(1500)))
    await check("PUT 1 KB", Code.PUT, "/aio-1k", Code.CREATED, BIG[:1024])
    await check("GET 1 KB", Code.GET, "/aio-1k", Code.CONTENT, expect_payload=BIG[:1024])
    await check("NON GET", Code.GET, "/time", Code.CONTENT, mtype=aiocoap.NON)
    await check("PUT create", Code.PUT, "/aio", Code.CREATED, b"one")
    await check("PUT again", Code.PUT, "/aio", Code.CHANGED, b"two")
    await check("GET created", Code.GET, "/aio", Code.CONTENT, expect_payload=b"two")
    await check("POST", Code.POST, "/aio", Code.CHANGED, b"three")
    await check("DELETE", Code.DELETE, "/aio", Code.DELETED)
    await check("DELETE again", Code.DELETE, "/aio", Code.NOT_FOUND)
    await check("Block1 upload 5000", Code.PUT, "/aio-big", Code.CREATED, BIG)
    await check("Block2 download 5000", Code.GET, "/aio-big", Code.CONTENT, expect_payload=BIG)
    await check("separate response", Code.GET, "/async?1", Code.CONTENT, expect_payload=b"done")

    # Observe /time (RFC 7641): the first answer and three notifications, all different.
    try:
        msg = aiocoap.Message(code=Code.GET, uri=base + "/time", observe=0)
        pr, first = await ask(msg)
        seen = [first.payload]
        async def two():
            async for n in pr.observation:
                seen.append(n.payload)
                if len(seen) == 4:
                    return
        await asyncio.wait_for(two(), 10)
        pr.observation.cancel()
        if first.opt.observe is None or len(set(seen)) != 4:
            raise AssertionError(f"observe {first.opt.observe}, payloads {seen}")
        print("PASS observe /time", flush=True)
    except Exception as e:  # noqa: BLE001
        print(f"FAIL observe /time: {e!r}", flush=True)
        failures += 1
    print(f"ECHO {echoed}", flush=True)
    await ctx.shutdown()
    return failures


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("server", "client"):
        sys.exit(__doc__)
    if sys.argv[1] == "server":
        asyncio.run(serve(int(sys.argv[2])))
    else:
        sys.exit(1 if asyncio.run(run_client(sys.argv[2])) else 0)


if __name__ == "__main__":
    main()
