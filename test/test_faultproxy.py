"""Tests of the fault proxy (faultproxy.py): bytes arrive intact, and each
mode does what it says: cut resets live connections and refuses new ones,
blackhole stalls without closing, delay adds the asked latency, throttle
bounds the rate, pass restores. Whether the proxy is fast enough not to be
the bottleneck is a timing question: `make bench` answers it
(test/bench/bench_proxy.py), never `make check`."""

import errno
import hashlib
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest


pytestmark = pytest.mark.timeout(120)


class EchoServer:
    """A loopback TCP echo server in a thread (one thread per client)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c):
        with c:
            try:
                while True:
                    data = c.recv(1 << 20)
                    if not data:
                        return
                    c.sendall(data)
            except OSError:
                return

    def close(self):
        self.sock.close()


@pytest.fixture
def echo():
    e = EchoServer()
    yield e
    e.close()


def connect(port, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exactly(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"eof after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def round_trip(s, size=64):
    t0 = time.monotonic()
    s.sendall(b"p" * size)
    recv_exactly(s, size)
    return time.monotonic() - t0


def wait_for(cond, timeout, step=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


# ---- integrity ------------------------------------------------------

def test_pass_preserves_bytes_both_ways(echo, proxy_to):
    p = proxy_to(echo.port)
    data = os.urandom(8 << 20)
    s = connect(p.port, timeout=30)
    sender = threading.Thread(target=s.sendall, args=(data,))
    sender.start()
    back = recv_exactly(s, len(data))
    sender.join()
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
    s.close()
    assert wait_for(lambda: p.stats()["active"] == 0, 5)


# ---- modes ----------------------------------------------------------------------

def start_ssh_session(sshd, port):
    """An ssh running a long command through `port`, once it is running."""
    p = subprocess.Popen(sshd.ssh_cmd("echo ready; exec sleep 60", port=port),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
    assert p.stdout.readline().strip() == "ready", p.stderr.read()
    return p


def test_cut_resets_live_ssh_and_refuses(sshd, fault_proxy):
    p = fault_proxy(sshd)
    ssh = start_ssh_session(sshd, p.port)
    try:
        p.cut()
        # Reset, not a timeout: ssh ends at once (bounded by the wait).
        ssh.wait(timeout=10)
        assert ssh.returncode == 255
        assert re.search("reset|broken pipe", ssh.stderr.read(), re.I)
        with pytest.raises(ConnectionRefusedError):
            connect(p.port)
    finally:
        if ssh.poll() is None:
            ssh.kill()
            ssh.wait()
    p.restore()
    assert subprocess.run(sshd.ssh_cmd("true", port=p.port),
                          timeout=30).returncode == 0


def test_cut_rst_mode_accepts_then_resets(echo, proxy_to):
    p = proxy_to(echo.port)
    p.cut(refuse="rst")
    # The reset may already be there when connect() returns, or show up on
    # the first send or receive (possibly as EOF).
    with pytest.raises(OSError) as e:
        s = connect(p.port)
        try:
            s.sendall(b"x")
            if s.recv(1) == b"":
                raise ConnectionResetError(errno.ECONNRESET, "eof")
        finally:
            s.close()
    assert e.value.errno in (errno.ECONNRESET, errno.EPIPE)
    assert p.stats()["refused"] >= 1
    p.restore()
    s = connect(p.port)
    assert round_trip(s) < 1
    s.close()


def test_cut_reaches_the_server_side(make_sshd, fault_proxy):
    """The server sees the reset too: its session processes go away."""
    server = make_sshd()
    p = fault_proxy(server)
    ssh = start_ssh_session(server, p.port)
    try:
        assert server.session_pids()
        p.cut()
        assert wait_for(lambda: not server.session_pids(), 5)
    finally:
        ssh.kill()
        ssh.wait()


def test_blackhole_stalls_without_closing(sshd, fault_proxy):
    p = fault_proxy(sshd)
    cmd = " ".join(sshd.ssh_cmd("cat > /dev/null", port=p.port))
    # A paced writer: about 20 MB/s for 64 MiB, so it is still running when
    # the blackhole starts.
    feeder = (f"{sys.executable} -c 'import sys,time\n"
              f"b=bytes(1<<20)\n"
              f"for i in range(64):\n"
              f"  sys.stdout.buffer.write(b); sys.stdout.flush(); time.sleep(0.05)'")
    ssh = subprocess.Popen(f"{feeder} | {cmd}", shell=True,
                           stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: p.stats()["bytes_up"] > (4 << 20), 15)
        p.blackhole()
        before = p.stats()
        time.sleep(1.0)  # the observation window itself
        after = p.stats()
        assert after["bytes_up"] == before["bytes_up"]
        assert after["bytes_down"] == before["bytes_down"]
        assert after["active"] == 1 and ssh.poll() is None
        # A new connection is accepted but sees no banner.
        s = connect(p.port, timeout=1)
        with pytest.raises(socket.timeout):
            s.recv(100)
        p.restore()
        s.settimeout(5)
        assert s.recv(100).startswith(b"SSH-2.0-")
        s.close()
        assert ssh.wait(timeout=30) == 0, ssh.stderr.read()
    finally:
        if ssh.poll() is None:
            ssh.kill()
            ssh.wait()


def test_delay_adds_latency_each_way(echo, proxy_to):
    p = proxy_to(echo.port)
    s = connect(p.port)
    base = min(round_trip(s) for _ in range(5))
    p.delay(100)
    delayed = [round_trip(s) for _ in range(5)]
    p.restore()
    after = min(round_trip(s) for _ in range(5))
    s.close()
    print(f"\nround trip: {base * 1e3:.1f} ms, with delay 100 ms each way "
          f"{min(delayed) * 1e3:.1f}-{max(delayed) * 1e3:.1f} ms, restored "
          f"{after * 1e3:.1f} ms")
    # Lower bounds only: a loaded machine adds latency, never removes it.
    # Restored, no round trip carries the 200 ms any more.
    assert all(d >= 0.195 for d in delayed)
    assert after < 0.195


def test_delay_preserves_order_and_bytes(echo, proxy_to):
    p = proxy_to(echo.port)
    p.delay(30)
    s = connect(p.port, timeout=30)
    data = os.urandom(4 << 20)
    sender = threading.Thread(target=s.sendall, args=(data,))
    sender.start()
    back = recv_exactly(s, len(data))
    sender.join()
    s.close()
    assert back == data


def test_throttle_bounds_rate(echo, proxy_to):
    p = proxy_to(echo.port)
    rate = 2 << 20
    p.throttle(rate)
    s = connect(p.port, timeout=30)
    size = 3 << 20
    sender = threading.Thread(target=s.sendall, args=(bytes(size),))
    t0 = time.monotonic()
    sender.start()
    recv_exactly(s, size)
    elapsed = time.monotonic() - t0
    sender.join()
    measured = size / elapsed
    print(f"\nthrottle {rate} B/s: measured {measured:.0f} B/s")
    # The bound is an upper one: a loaded machine can only be slower.
    assert measured < 1.15 * rate
    p.restore()
    t0 = time.monotonic()
    sender = threading.Thread(target=s.sendall, args=(bytes(size),))
    sender.start()
    recv_exactly(s, size)
    sender.join()
    # Restored: faster than the throttle would ever allow.
    assert time.monotonic() - t0 < size / rate
    s.close()


def test_fault_context_restores_on_error(echo, proxy_to):
    p = proxy_to(echo.port)
    s = connect(p.port)
    with pytest.raises(RuntimeError):
        with p.fault("delay", 500):
            raise RuntimeError("test body failed")
    assert round_trip(s) < 0.95  # the 500 ms each way is gone
    s.close()


def test_half_close_passes_eof(echo, proxy_to):
    p = proxy_to(echo.port)
    s = connect(p.port)
    s.sendall(b"last words")
    s.shutdown(socket.SHUT_WR)
    assert recv_exactly(s, 10) == b"last words"
    assert s.recv(10) == b""
    s.close()
    assert wait_for(lambda: p.stats()["active"] == 0, 5)
