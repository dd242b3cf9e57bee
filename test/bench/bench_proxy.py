"""Is the fault proxy fast enough not to be the bottleneck? Throughput
through it against a direct connection, with plain sockets and with a real
ssh, and the proxy's CPU cost per byte. These are timings, so they run in
`make bench` (a pytest run of this file), never in `make check`, which must
pass on a loaded machine."""

import resource
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.timeout(300)


_SINK = r"""
import socket, sys, time
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
print(l.getsockname()[1], flush=True)
c, _ = l.accept(); buf = bytearray(1 << 20); n = 0
while True:
    k = c.recv_into(buf)
    if not k:
        break
    n += k
print(n, flush=True)
"""
_SOURCE = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
blk = b"\0" * (1 << 20)
for _ in range(int(sys.argv[2])):
    s.sendall(blk)
s.close()
"""


def own_cpu():
    """CPU seconds of this process: the proxy thread, the test is idle."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(transfer, nbytes):
    """(MB/s, CPU seconds this process spent) for one transfer."""
    cpu, t0 = own_cpu(), time.monotonic()
    transfer()
    return nbytes / (time.monotonic() - t0) / 1e6, own_cpu() - cpu


def raw_transfer(port_of_sink, mib):
    """A one-way bulk transfer between two child processes; port_of_sink
    maps the sink's port to the port to connect to."""
    sink = subprocess.Popen([sys.executable, "-c", _SINK], stdout=subprocess.PIPE,
                            text=True)
    try:
        port = port_of_sink(int(sink.stdout.readline()))
        subprocess.run([sys.executable, "-c", _SOURCE, str(port), str(mib)],
                       check=True, timeout=60)
        assert int(sink.stdout.readline()) == mib << 20
    finally:
        sink.kill()
        sink.wait()


def ssh_transfer(sshd, port, mib):
    """`head -c N /dev/zero | ssh -p PORT 'cat > /dev/null'`."""
    cmd = " ".join(sshd.ssh_cmd("cat > /dev/null", port=port))
    subprocess.run(f"head -c {mib}M /dev/zero | {cmd}", shell=True, check=True,
                   timeout=90)


def report(what, nbytes, direct, proxied):
    """Print both rates and the proxy's CPU cost; return the rate one
    core could carry through the proxy (bytes / proxy CPU seconds)."""
    ceiling = nbytes / max(proxied[1], 1e-3) / 1e6
    print(f"\n{what}: direct {direct[0]:.0f} MB/s, through proxy "
          f"{proxied[0]:.0f} MB/s (ratio {proxied[0] / direct[0]:.2f}); proxy "
          f"CPU {proxied[1]:.2f} s, i.e. one core carries ~{ceiling:.0f} MB/s")
    return ceiling


def test_proxy_ceiling_raw_sockets(proxy_to):
    """The proxy's own ceiling, no crypto in the way."""
    mib = 1024
    direct = max(measure(lambda: raw_transfer(lambda port: port, mib), mib << 20)
                 for _ in range(2))
    proxied = max(measure(lambda: raw_transfer(lambda port: proxy_to(port).port,
                                               mib), mib << 20)
                  for _ in range(2))
    ceiling = report("raw TCP 1 GiB", mib << 20, direct, proxied)
    # An ssh/sftp stream on this kind of machine runs ~50-200 MB/s. Rates
    # swing with other load on a shared machine (through the proxy: 130 to
    # 1000 MB/s seen); its CPU cost per byte does not, so assert on that.
    assert ceiling > 400


def test_proxy_ceiling_ssh(sshd, fault_proxy):
    """Real ssh: the proxy costs little next to encryption."""
    p = fault_proxy(sshd)
    mib = 200
    direct = max(measure(lambda: ssh_transfer(sshd, sshd.port, mib), mib << 20)
                 for _ in range(2))
    proxied = max(measure(lambda: ssh_transfer(sshd, p.port, mib), mib << 20)
                  for _ in range(2))
    ceiling = report("ssh cat 200 MiB", mib << 20, direct, proxied)
    assert ceiling > 4 * direct[0]
