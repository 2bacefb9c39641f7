"""A userspace NTP relay for time-quality tests and benches: requests to (listen, 123) go on to
upstream:123 from a socket of its own, and each reply goes back to whoever sent the request
with its transmit timestamp. Every datagram is held for delay(outbound) s, where delay is the
caller's function of the direction (None: the datagram is dropped), so jitter, loss and a
constant asymmetry are all one parameter. One thread; stopped by stop()."""

import heapq
import select
import socket
import threading
import time


class Relay:
    def __init__(self, listen, upstream, delay):
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind((listen, 123))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind((listen, 0))
        self.upstream = (upstream, 123)
        self.delay = delay
        self.clients = {}  # request transmit timestamp -> client address
        self.queue = []
        self.seq = 0
        self.counts = {"held": 0, "dropped": 0, "forwarded": 0}
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def hold(self, sock, data, addr, out):
        d = self.delay(out)
        if d is None:
            self.counts["dropped"] += 1
            return
        self.counts["held"] += 1
        self.seq += 1
        heapq.heappush(self.queue, (time.monotonic() + d, self.seq, sock, data, addr))

    def receive(self, sock):
        data, addr = sock.recvfrom(2048)
        if len(data) < 48:
            return
        if sock is self.front:
            if len(self.clients) > 10000:  # bounded: forgotten requests are never answered
                self.clients.clear()
            self.clients[data[40:48]] = addr
            self.hold(self.back, data, self.upstream, True)
        else:
            client = self.clients.pop(data[24:32], None)
            if client:
                self.hold(self.front, data, client, False)

    def run(self):
        while self.running:
            now = time.monotonic()
            while self.queue and self.queue[0][0] <= now:
                _, _, sock, data, addr = heapq.heappop(self.queue)
                sock.sendto(data, addr)
                self.counts["forwarded"] += 1
            wait = min(0.05, self.queue[0][0] - now) if self.queue else 0.05
            for sock in select.select([self.front, self.back], [], [], max(0.0, wait))[0]:
                self.receive(sock)

    def stop(self):
        self.running = False
        self.thread.join(timeout=2)
        self.front.close()
        self.back.close()
