"""A userspace NTP relay for time-quality tests and benches: requests to (listen, 123) go on to
upstream:123 from a socket of its own, and each reply goes back to whoever sent the request
with its transmit timestamp. Every datagram is held for floor + delay(outbound) s, where delay
is the caller's function of the direction (None: the datagram is dropped), so jitter, loss and
a constant asymmetry are all one parameter. One thread; stopped by stop().

The hold is measured from the datagram's arrival as the kernel stamped it (SO_TIMESTAMPNS), not
from when this thread got to read it, and the send is timed to the microsecond (timer slack 1 ns,
a short spin before the deadline). Otherwise the relay's own wakeup becomes part of the path, and
it is not the same both ways: a request finds the relay asleep, the reply a moment later finds it
awake, and a client that keeps the CPU a little longer after sending delays its own request.
Measured with every delay 0 (bench/timequality.py --scenarios zero, 150 s of readings):
without a relay ntpgated's and chronyd's estimates agree within 1 us (-6 and -7 us); through
the old relay (held from the read, floor 0) ntpgated's samples read +42 us; through this one
(floor 0.25 ms) ntpgated's estimate is -3 us and chronyd's -11 us. The floor, the same both
ways, adds delay and no offset, and covers the wakeup, so that every leg is floor + delay."""

import ctypes
import heapq
import select
import socket
import struct
import threading
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
PR_SET_TIMERSLACK = 29
SPIN = 0.0003  # s before a deadline from which the thread spins instead of sleeping
FLOOR = 0.00025


def _tight_timers():
    """Timer slack 1 ns for this thread (the default 50 us would move every send)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Relay:
    def __init__(self, listen, upstream, delay, floor=FLOOR):
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind((listen, 123))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind((listen, 0))
        for s in (self.front, self.back):
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.upstream = (upstream, 123)
        self.delay = delay
        self.floor = floor
        self.clients = {}  # request transmit timestamp -> client address
        self.queue = []
        self.seq = 0
        self.counts = {"held": 0, "dropped": 0, "forwarded": 0, "late": 0}
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def hold(self, sock, data, addr, out, arrived):
        d = self.delay(out)
        if d is None:
            self.counts["dropped"] += 1
            return
        self.counts["held"] += 1
        self.seq += 1
        heapq.heappush(self.queue, (arrived + self.floor + d, self.seq, sock, data, addr))

    def receive(self, sock):
        data, anc, _, addr = sock.recvmsg(2048, 64)
        # the kernel's arrival time on the monotonic clock (the stamp is CLOCK_REALTIME)
        arrived = time.monotonic()
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                sec, nsec = struct.unpack("qq", value[:16])
                arrived -= max(0.0, time.time() - (sec + nsec * 1e-9))
        if len(data) < 48:
            return
        if sock is self.front:
            if len(self.clients) > 10000:  # bounded: forgotten requests are never answered
                self.clients.clear()
            self.clients[data[40:48]] = addr
            self.hold(self.back, data, self.upstream, True, arrived)
        else:
            client = self.clients.pop(data[24:32], None)
            if client:
                self.hold(self.front, data, client, False, arrived)

    def run(self):
        _tight_timers()
        while self.running:
            now = time.monotonic()
            while self.queue and self.queue[0][0] <= now:
                due, _, sock, data, addr = heapq.heappop(self.queue)
                sock.sendto(data, addr)
                self.counts["forwarded"] += 1
                self.counts["late"] += now - due > 0.0001
            if self.queue and self.queue[0][0] - now <= SPIN:
                ready = select.select([self.front, self.back], [], [], 0)[0]
                if not ready:
                    continue  # spin: the next send is due within SPIN
            else:
                wait = min(0.05, self.queue[0][0] - now - SPIN) if self.queue else 0.05
                ready = select.select([self.front, self.back], [], [], max(0.0, wait))[0]
            for sock in ready:
                self.receive(sock)

    def stop(self):
        self.running = False
        self.thread.join(timeout=2)
        self.front.close()
        self.back.close()
