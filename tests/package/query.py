"""Ask an NTP server on each given address (port 123) for the time with one plain mode 3
request and check the answer is a well-formed mode 4 reply of the same size that echoes our
transmit timestamp. Waits up to 10 s for the server to come up. Exit 0 if every address
answered."""
import os
import socket
import struct
import sys
import time


def ask(addr):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    cookie = os.urandom(8)
    request = bytes([0x23]) + bytes(39) + cookie  # LI 0, version 4, mode 3
    deadline = time.monotonic() + 10
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        while time.monotonic() < deadline:
            s.sendto(request, (addr, 123))
            try:
                reply, _ = s.recvfrom(1024)
            except (socket.timeout, ConnectionRefusedError):
                continue
            mode, version = reply[0] & 7, (reply[0] >> 3) & 7
            ok = len(reply) == 48 and mode == 4 and version == 4 and reply[24:32] == cookie
            print("%s: %d octets, mode %d, version %d, leap %d, stratum %d%s"
                  % (addr, len(reply), mode, version, reply[0] >> 6, reply[1],
                     "" if ok else " (bad)"))
            return ok
    print("%s: no answer within 10 s" % addr)
    return False


sys.exit(0 if all([ask(a) for a in sys.argv[1:]]) else 1)
