"""A fault-injection TCP proxy on loopback, controlled from the test.

    proxy = FaultProxy("127.0.0.1", sshd.port).start()   # listens on proxy.port
    proxy.cut()              # reset every connection, refuse new ones
    proxy.blackhole()        # keep sockets open, forward nothing (silent partition)
    proxy.delay(200)         # +200 ms each way, order preserved
    proxy.throttle(1 << 20)  # at most 1 MiB/s each way
    proxy.restore()          # pass: forward at full speed again
    with proxy.fault("cut"): ...   # the same, restored on exit
    proxy.stop()

One thread runs an epoll loop over every socket; a mode change is a
command handed to that thread (through an eventfd) and has taken effect on
every existing connection when the call returns. Data is never dropped
while a connection lives: a blackhole or throttle only holds it back, the
way TCP retransmission makes a healed partition lose nothing. Delay stamps
each chunk with its release time and releases chunks in order; throttle is
a token bucket per direction. Each direction holds back at most a bounded
number of bytes (more with a delay, for the bandwidth-delay product) and
stops reading when full, so a sender feels backpressure as on a real link.

Cut resets with SO_LINGER 0 (both peers get ECONNRESET) and, by default,
closes the listener so a new connect gets ECONNREFUSED; `cut(refuse="rst")`
keeps it open and resets every accepted connection at once instead.
A connection accepted during a blackhole is connected upstream only when
the blackhole ends (its SYN "got through" late).

Python is fast enough here: big recv buffers keep the per-byte work in the
kernel; test_faultproxy.py measures it against a direct connection.
"""

import collections
import contextlib
import errno
import heapq
import os
import select
import socket
import struct
import threading
import time

CHUNK = 256 * 1024
HOLD_PASS = 4 << 20          # bytes held back per direction, pass mode
HOLD_DELAY = 64 << 20        # with a delay (bandwidth x delay)
IN, OUT = select.EPOLLIN, select.EPOLLOUT
ERRMASK = select.EPOLLERR | select.EPOLLHUP
MODES = ("pass", "cut", "blackhole")


def _reset(sock):
    """Close with an RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Dir:
    """One direction of a connection: bytes read from `src`, held in
    `queue` as [release_time, data] chunks, written to `dst`."""

    __slots__ = ("src", "dst", "queue", "held", "eof", "done", "tokens",
                 "refill", "blocked", "wake", "name")

    def __init__(self, src, dst, name):
        self.src, self.dst, self.name = src, dst, name
        self.queue = collections.deque()
        self.held = 0
        self.eof = False       # src said EOF
        self.done = False      # EOF passed on to dst
        self.tokens = 0.0
        self.refill = time.monotonic()
        self.blocked = False   # dst's send buffer is full: wait for EPOLLOUT
        self.wake = None       # when a timer will pump this direction


class _Conn:
    __slots__ = ("client", "upstream", "up", "down", "masks")

    def __init__(self, client):
        self.client, self.upstream = client, None
        self.up = self.down = None
        self.masks = {}


class ProxyError(RuntimeError):
    pass


class FaultProxy:
    """See the module docstring. Attributes: port (listening), target,
    mode, delay_ms, rate (bytes/s or None), stats()."""

    def __init__(self, target_host, target_port, listen_host="127.0.0.1",
                 port=0):
        self.target = (target_host, target_port)
        self.listen_host, self.port = listen_host, port
        self.mode, self.delay_ms, self.rate, self.refuse = "pass", 0, None, "close"
        self._ep = select.epoll()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._ep.register(self._wake, IN)
        self._cmds = collections.deque()
        self._listener = None
        self._conns = {}       # fd -> _Conn, for both sockets of a pair
        self._timers = []      # heap of (when, seq, _Dir)
        self._seq = 0
        self._stop = False
        self._failure = None
        self._thread = None
        self.accepted = self.refused = 0
        self.bytes_up = self.bytes_down = 0

    # ---- control (any thread) -------------------------------------------

    def start(self):
        self._listen()
        self._thread = threading.Thread(target=self._run, name="faultproxy",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Reset every connection, close the listener, end the thread."""
        if self._thread is None:
            return
        self._call(self._shutdown)
        self._thread.join(10)
        self._thread = None
        os.close(self._wake)
        self._ep.close()

    def configure(self, mode=None, delay_ms=None, rate=None, refuse=None):
        """Change any of mode ("pass", "cut", "blackhole"), delay_ms,
        rate (bytes/s each way; 0 or None: unlimited) and refuse ("close"
        or "rst"). Returns when it applies to every connection."""
        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown mode '{mode}'")
        self._call(lambda: self._apply(mode, delay_ms, rate, refuse))
        return self

    def restore(self):
        return self.configure(mode="pass", delay_ms=0, rate=0)

    def cut(self, refuse="close"):
        return self.configure(mode="cut", refuse=refuse)

    def blackhole(self):
        return self.configure(mode="blackhole")

    def delay(self, ms):
        return self.configure(mode="pass", delay_ms=ms)

    def throttle(self, bytes_per_second):
        return self.configure(mode="pass", rate=bytes_per_second)

    @contextlib.contextmanager
    def fault(self, kind, value=None):
        """`with proxy.fault("cut"|"blackhole"|"delay"|"throttle", value):`
        the fault for the block, then pass again (also on error)."""
        apply = {"cut": lambda: self.cut(), "blackhole": self.blackhole,
                 "delay": lambda: self.delay(value),
                 "throttle": lambda: self.throttle(value)}[kind]
        apply()
        try:
            yield self
        finally:
            self.restore()

    def stats(self):
        """Counters: accepted, refused, active connections, bytes each way."""
        return self._call(lambda: {
            "accepted": self.accepted, "refused": self.refused,
            "active": len({id(c) for c in self._conns.values()}),
            "bytes_up": self.bytes_up, "bytes_down": self.bytes_down})

    def _call(self, fn, timeout=10.0):
        """Run fn on the proxy thread and return its result (or raise)."""
        if self._failure:
            raise ProxyError(f"proxy thread failed: {self._failure!r}")
        done, box = threading.Event(), {}

        def cmd():
            try:
                box["r"] = fn()
            except Exception as e:  # handed back to the caller
                box["e"] = e
            done.set()
        self._cmds.append(cmd)
        os.eventfd_write(self._wake, 1)
        if not done.wait(timeout):
            raise ProxyError("proxy thread did not answer")
        if "e" in box:
            raise box["e"]
        return box.get("r")

    # ---- the loop (proxy thread only) -------------------------------------

    def _run(self):
        try:
            while not self._stop:
                timeout = -1
                if self._timers:
                    timeout = max(0.0, self._timers[0][0] - time.monotonic())
                for fd, ev in self._ep.poll(timeout):
                    self._event(fd, ev)
                self._expire_timers()
        except Exception as e:  # noqa: BLE001 (report it, never hang)
            self._failure = e
            while self._cmds:
                self._cmds.popleft()()
            raise

    def _event(self, fd, ev):
        if fd == self._wake:
            os.eventfd_read(self._wake)
            while self._cmds:
                self._cmds.popleft()()
        elif self._listener is not None and fd == self._listener.fileno():
            self._accept()
        elif fd in self._conns:
            c = self._conns[fd]
            if c.up is None:  # accepted in a blackhole, not yet connected
                if ev & ERRMASK:
                    self._drop(c)
                return
            sock = c.client if fd == c.client.fileno() else c.upstream
            inbound = c.up if sock is c.client else c.down
            outbound = c.down if sock is c.client else c.up
            if ev & select.EPOLLHUP and inbound.eof and outbound.done:
                # Finished both ways; HUP is level-triggered and cannot be
                # masked, so stop watching the socket (the other
                # direction may still be flushing).
                self._ep.unregister(fd)
                c.masks[fd] = None
                return
            if ev & (IN | ERRMASK):
                if not self._read(c, inbound):
                    return
            if ev & OUT and outbound is not None:
                outbound.blocked = False
                if not self._pump(c, outbound):
                    return
            self._update(c)

    def _expire_timers(self):
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            when, _, d = heapq.heappop(self._timers)
            if d.wake == when:
                d.wake = None
            c = self._conns.get(d.src.fileno()) if d.src.fileno() >= 0 else None
            if c is not None and self._pump(c, d):
                self._update(c)

    def _timer(self, when, d):
        if d.wake is not None and d.wake <= when:
            return  # an earlier timer will pump it anyway
        d.wake = when
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, d))

    # ---- listener and connections -------------------------------------

    def _listen(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((self.listen_host, self.port))
        except OSError:
            s.close()
            raise
        s.listen(128)
        s.setblocking(False)
        self.port = s.getsockname()[1]
        self._listener = s
        self._ep.register(s.fileno(), IN)

    def _unlisten(self):
        if self._listener is not None:
            self._ep.unregister(self._listener.fileno())
            self._listener.close()
            self._listener = None

    def _accept(self):
        while True:
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            if self.mode == "cut":
                self.refused += 1
                _reset(sock)
                continue
            self.accepted += 1
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = _Conn(sock)
            self._conns[sock.fileno()] = c
            c.masks[sock.fileno()] = 0
            self._ep.register(sock.fileno(), 0)
            if self.mode == "pass":
                self._connect(c)

    def _connect(self, c):
        """Connect upstream (blocking, but loopback answers at once)."""
        try:
            up = socket.create_connection(self.target, timeout=2)
        except OSError:
            self._drop(c)  # the server is down: the client sees a reset
            return
        up.setblocking(False)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.upstream = up
        c.up, c.down = _Dir(c.client, up, "up"), _Dir(up, c.client, "down")
        self._conns[up.fileno()] = c
        c.masks[up.fileno()] = 0
        self._ep.register(up.fileno(), 0)
        self._update(c)

    def _drop(self, c, rst=True):
        for s in (c.client, c.upstream):
            if s is not None and s.fileno() >= 0:
                self._conns.pop(s.fileno(), None)
                if c.masks.get(s.fileno()) is not None:
                    self._ep.unregister(s.fileno())
                _reset(s) if rst else s.close()

    # ---- moving bytes -------------------------------------------------------

    def _hold_limit(self):
        if self.rate:
            return max(64 * 1024, self.rate // 4)
        return HOLD_DELAY if self.delay_ms else HOLD_PASS

    def _read(self, c, d):
        """Read what the source has; False when the connection is gone."""
        try:
            data = d.src.recv(CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            self._drop(c)
            return False
        if not data:
            d.eof = True
        else:
            d.queue.append([time.monotonic() + self.delay_ms / 1000.0,
                            memoryview(data)])
            d.held += len(data)
        return self._pump(c, d)

    def _pump(self, c, d):
        """Send what may be sent now; False when the connection is gone."""
        if self.mode != "pass" or d.blocked:
            return True
        now = time.monotonic()
        if self.rate:
            burst = max(16384.0, self.rate / 50.0)
            d.tokens = min(burst, d.tokens + (now - d.refill) * self.rate)
            d.refill = now
        while d.queue:
            item = d.queue[0]
            if self.delay_ms and item[0] > now:
                self._timer(item[0], d)
                break
            data = item[1]
            n = len(data)
            if self.rate:
                n = min(n, int(d.tokens))
                if n <= 0:
                    self._timer(now + min(len(data), 16384) / self.rate, d)
                    break
            try:
                sent = d.dst.send(data if n == len(data) else data[:n])
            except BlockingIOError:
                d.blocked = True
                break
            except OSError:
                self._drop(c)
                return False
            if d.name == "up":
                self.bytes_up += sent
            else:
                self.bytes_down += sent
            d.held -= sent
            d.tokens -= sent
            if sent == len(data):
                d.queue.popleft()
            else:
                item[1] = data[sent:]
                if sent < n:
                    d.blocked = True
                    break
        if d.eof and not d.queue and not d.done:
            d.done = True
            try:
                d.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if c.up.done and c.down.done:
            self._drop(c, rst=False)
            return False
        return True

    def _update(self, c):
        """Recompute each socket's epoll mask from the state of its two
        directions."""
        if c.up is None:
            return  # accepted in a blackhole: nothing to do until it ends
        live = self.mode == "pass"
        limit = self._hold_limit()
        for sock, inbound, outbound in ((c.client, c.up, c.down),
                                        (c.upstream, c.down, c.up)):
            if sock.fileno() < 0 or c.masks.get(sock.fileno(), 0) is None:
                continue
            mask = 0
            if live and not inbound.eof and inbound.held < limit:
                mask |= IN
            if live and outbound.blocked:
                mask |= OUT
            if c.masks.get(sock.fileno()) != mask:
                self._ep.modify(sock.fileno(), mask)
                c.masks[sock.fileno()] = mask

    # ---- commands -----------------------------------------------------------

    def _each_conn(self):
        seen = {}
        for c in self._conns.values():
            seen[id(c)] = c
        return list(seen.values())

    def _apply(self, mode, delay_ms, rate, refuse):
        if refuse is not None:
            self.refuse = refuse
        if delay_ms is not None:
            self.delay_ms = delay_ms
        if rate is not None:
            self.rate = rate or None
        if mode is not None:
            self.mode = mode
        if self.mode == "cut":
            for c in self._each_conn():
                self._drop(c)
            if self.refuse == "close":
                self._unlisten()
            elif self._listener is None:
                self._listen()
            return
        if self._listener is None:
            self._listen()
        for c in self._each_conn():
            if c.up is None and self.mode == "pass":
                self._connect(c)
                continue
            if c.up is None:
                continue
            if (self.mode == "pass" and self._pump(c, c.up)
                    and self._pump(c, c.down)):
                self._update(c)
            elif self.mode != "pass":
                self._update(c)

    def _shutdown(self):
        for c in self._each_conn():
            self._drop(c)
        self._unlisten()
        self._stop = True
