#!/usr/bin/env python3
"""A wire tap on a sub-device's serial link (docs/gateway.md §2), for scripts/qemu-selfupdate.sh.

    serial-tap.py LISTEN_SOCKET GATEWAY_SOCKET LOG

Listens on LISTEN_SOCKET (QEMU's `-serial unix:...` connects to it), connects each connection
to the gateway's GATEWAY_SOCKET, relays bytes both ways unchanged, and writes one line per
CoAP request the sub-device sends to LOG: `<method code> <Uri-Path> [block=<Block2 NUM>]
mid=<message id>` (a retransmission repeats its message id, RFC 7252 §4.5; SLIP frames decoded,
RFC 1055; the FCS-16 checked, RFC 1662 §C.2; options walked, RFC 7252 §3.1). It is the
independent record of what the device asked for: the firmware's own count is not trusted for
the proof that a refused release cost no payload block.
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


class Frames:
    def __init__(self, log):
        self.buf, self.esc, self.log = bytearray(), False, log

    def push(self, data):
        for b in data:
            if b == 0xC0:
                frame, self.buf = bytes(self.buf), bytearray()
                if len(frame) >= 3 and fcs16(frame[:-2]) == int.from_bytes(frame[-2:], "little"):
                    msg = frame[:-2]
                    if len(msg) >= 4 and msg[1] != 0:
                        code = msg[1]
                        mid = int.from_bytes(msg[2:4], "big")
                        path, block = options(msg)
                        block = "" if block is None else f" block={block}"
                        self.log.write(f"{code >> 5}.{code & 0x1F:02} {path}{block} mid={mid}\n")
                        self.log.flush()
            elif self.esc:
                self.buf.append({0xDC: 0xC0, 0xDD: 0xDB}.get(b, b))
                self.esc = False
            elif b == 0xDB:
                self.esc = True
            else:
                self.buf.append(b)


def main():
    listen, gateway, log_path = sys.argv[1:4]
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
            frames = Frames(log)
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
                        frames.push(data)
                    peers[s].sendall(data)
            device.close()
            upstream.close()


if __name__ == "__main__":
    main()
