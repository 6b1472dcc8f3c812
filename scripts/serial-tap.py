#!/usr/bin/env python3
"""A wire tap on a sub-device's serial link (docs/gateway.md §2), for scripts/qemu-selfupdate.sh.

    serial-tap.py LISTEN_SOCKET GATEWAY_SOCKET LOG [QUEUE_FULL]

Listens on LISTEN_SOCKET (QEMU's `-serial unix:...` connects to it), connects each connection
to the gateway's GATEWAY_SOCKET, relays bytes both ways unchanged, and writes one line per
CoAP request the sub-device sends to LOG: `<method code> <Uri-Path> [block=<Block2 NUM>]
mid=<message id>` (a retransmission repeats its message id, RFC 7252 §4.5; SLIP frames decoded,
RFC 1055; the FCS-16 checked, RFC 1662 §C.2; options walked, RFC 7252 §3.1). It is the
independent record of what the device asked for: the firmware's own count is not trusted for
the proof that a refused release cost no payload block.

With QUEUE_FULL = N, the tap answers the first N `POST /d/reports` itself, as the gateway does
when its report queue is full (docs/gateway.md §3: 5.03 with Max-Age, here 1 s), instead of
relaying them: the sub-device must keep each report and send it again (logged `tap: 5.03`).
"""
import os
import select
import socket
import sys


def fcs16(data):
    fcs = 0xFFFF
    for b in data:
        fcs ^= b
        for _ in range(8):
            fcs = (fcs >> 1) ^ 0x8408 if fcs & 1 else fcs >> 1
    return fcs ^ 0xFFFF


def options(msg):
    """The Uri-Path and the Block2 number (None without one)."""
    tkl = msg[0] & 0x0F
    at, number, path, block = 4 + tkl, 0, [], None
    while at < len(msg) and msg[at] != 0xFF:
        head = msg[at]
        at += 1
        vals = []
        for nib in (head >> 4, head & 0x0F):
            if nib == 13:
                nib = msg[at] + 13
                at += 1
            elif nib == 14:
                nib = int.from_bytes(msg[at:at + 2], "big") + 269
                at += 2
            vals.append(nib)
        number += vals[0]
        if number == 11:
            path.append(msg[at:at + vals[1]].decode("utf-8", "replace"))
        elif number == 23:
            block = int.from_bytes(msg[at:at + vals[1]], "big") >> 4
        at += vals[1]
    return "/" + "/".join(path), block


def slip(msg):
    """One SLIP frame (RFC 1055) of `msg` and its FCS-16, low byte first (RFC 1662 §C.2)."""
    out = bytearray([0xC0])
    for b in msg + fcs16(msg).to_bytes(2, "little"):
        out += {0xC0: b"\xDB\xDC", 0xDB: b"\xDB\xDD"}.get(b, bytes([b]))
    return bytes(out + b"\xC0")


def queue_full(msg):
    """The gateway's answer to a report it cannot queue: ACK 5.03, same message id and token,
    Max-Age 1 (option 14: delta 13+1, length 1), payload `queue-full` (RFC 7252 §3, §5.10.5)."""
    tkl = msg[0] & 0x0F
    return slip(bytes([0x60 | tkl, 0xA3]) + msg[2:4] + msg[4:4 + tkl] + b"\xD1\x01\x01\xFFqueue-full")


class Frames:
    def __init__(self, log, queue_full=0):
        self.buf, self.raw, self.esc, self.log = bytearray(), bytearray(), False, log
        self.queue_full = queue_full

    def push(self, data):
        """The bytes to relay to the gateway, and those to answer the device with."""
        relay, answer = bytearray(), bytearray()
        for b in data:
            self.raw.append(b)
            if b == 0xC0:
                frame, self.buf = bytes(self.buf), bytearray()
                raw, self.raw = bytes(self.raw), bytearray()
                if len(frame) >= 3 and fcs16(frame[:-2]) == int.from_bytes(frame[-2:], "little"):
                    msg = frame[:-2]
                    if len(msg) >= 4 and msg[1] != 0:
                        code = msg[1]
                        mid = int.from_bytes(msg[2:4], "big")
                        path, block = options(msg)
                        block = "" if block is None else f" block={block}"
                        self.log.write(f"{code >> 5}.{code & 0x1F:02} {path}{block} mid={mid}\n")
                        if code == 0x02 and path == "/d/reports" and self.queue_full > 0:
                            self.queue_full -= 1
                            self.log.write(f"tap: 5.03 queue-full to mid={mid}\n")
                            answer += queue_full(msg)
                            raw = b""
                        self.log.flush()
                relay += raw
            elif self.esc:
                self.buf.append({0xDC: 0xC0, 0xDD: 0xDB}.get(b, b))
                self.esc = False
            elif b == 0xDB:
                self.esc = True
            else:
                self.buf.append(b)
        return bytes(relay), bytes(answer)


def main():
    listen, gateway, log_path = sys.argv[1:4]
    reports_refused = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    if os.path.exists(listen):
        os.unlink(listen)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(listen)
    server.listen(1)
    with open(log_path, "a", encoding="utf-8") as log:
        while True:
            device, _ = server.accept()
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(gateway)
            frames = Frames(log, reports_refused)
            reports_refused = 0  # only on the first connection
            peers = {device: upstream, upstream: device}
            open_ = True
            while open_:
                ready, _, _ = select.select(list(peers), [], [])
                for s in ready:
                    data = s.recv(4096)
                    if not data:
                        open_ = False
                        break
                    if s is device:
                        data, answer = frames.push(data)
                        if answer:
                            device.sendall(answer)
                        if not data:
                            continue
                    peers[s].sendall(data)
            device.close()
            upstream.close()


if __name__ == "__main__":
    main()
