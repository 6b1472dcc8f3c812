"""The second, independent CoAP client of scripts/coap-test.sh: aiocoap (PyPI) with DTLSSocket
for DTLS 1.2 PSK. Discovery over plain CoAP; then, as one device over coaps: observe the
offer until a campaign offers something, check in (CBOR), download the payload block-wise
and compare its SHA-256, report a step.

    python3 scripts/coap-aiocoap.py COAP_PORT COAPS_PORT IDENTITY KEY PAYLOAD_FILE READY_FILE

READY_FILE is created once the observation is registered (the shell then starts the
campaign). Every wait is bounded; any failure exits non-zero with a message.
"""

import asyncio
import hashlib
import pathlib
import sys

import cbor2
from aiocoap import GET, POST, Context, Message
from aiocoap.numbers.contentformat import ContentFormat
from aiocoap.optiontypes import BlockOption


def fail(msg):
    print(f"coap-aiocoap: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


async def main():
    coap_port, coaps_port, identity, key, payload_file, ready = sys.argv[1:7]
    want = hashlib.sha256(pathlib.Path(payload_file).read_bytes()).hexdigest()
    ctx = await Context.create_client_context()
    base = f"coaps://127.0.0.1:{coaps_port}"
    ctx.client_credentials.load_from_dict(
        {
            f"{base}/*": {
                "dtls": {
                    "psk": {"ascii": key},
                    "client-identity": {"ascii": identity},
                }
            }
        }
    )

    r = await asyncio.wait_for(
        ctx.request(Message(code=GET, uri=f"coap://127.0.0.1:{coap_port}/.well-known/core")).response,
        10,
    )
    if not r.code.is_successful() or b"</d/offer>" not in r.payload:
        fail(f"discovery: {r.code} {r.payload!r}")
    print("coap-aiocoap: ok: discovery over coap://")

    # Observe the offer (RFC 7641) until it says "check in".
    req = ctx.request(Message(code=GET, uri=f"{base}/d/offer", observe=0))
    first = await asyncio.wait_for(req.response, 10)
    if cbor2.loads(first.payload) != {"check_in": False}:
        fail(f"first offer state: {first.code} {first.payload!r}")
    pathlib.Path(ready).touch()

    async def notifications():
        async for n in req.observation:
            if cbor2.loads(n.payload).get("check_in"):
                return n
    got = await asyncio.wait_for(notifications(), 20)
    req.observation.cancel()
    if got is None:
        fail("the observation ended without an offer")
    print(f"coap-aiocoap: ok: observed the offer over coaps ({cbor2.loads(got.payload)})")

    # Check in (CBOR), as the notification asks.
    r = await asyncio.wait_for(
        ctx.request(
            Message(
                code=POST,
                uri=f"{base}/d/checkin",
                payload=cbor2.dumps({}),
                content_format=ContentFormat.CBOR,
            )
        ).response,
        10,
    )
    answer = cbor2.loads(r.payload)
    if answer.get("action") != "update":
        fail(f"check-in: {r.code} {answer}")
    offer = answer["update"]
    url = offer["payloads"][0]["url"]

    # The payload block-wise at 512 bytes (aiocoap follows Block2 to the end).
    m = Message(code=GET, uri=f"{base}{url}")
    m.opt.block2 = BlockOption.BlockwiseTuple(0, False, 5)
    r = await asyncio.wait_for(ctx.request(m).response, 60)
    if not r.code.is_successful():
        fail(f"download: {r.code} {r.payload!r}")
    have = hashlib.sha256(r.payload).hexdigest()
    if have != want:
        fail(f"download: SHA-256 {have}, uploaded {want}")
    print(f"coap-aiocoap: ok: {len(r.payload)} bytes block-wise over coaps, SHA-256 {have}")

    report = {"release_id": offer["release_id"], "step": "receive", "outcome": "success"}
    r = await asyncio.wait_for(
        ctx.request(
            Message(
                code=POST,
                uri=f"{base}/d/reports",
                payload=cbor2.dumps(report),
                content_format=ContentFormat.CBOR,
            )
        ).response,
        10,
    )
    if str(r.code) != "2.04 Changed":
        fail(f"report: {r.code} {r.payload!r}")
    print("coap-aiocoap: ok: step report")
    await ctx.shutdown()


asyncio.run(main())
