"""How the uTP driver's batched (GSO) sends fall back, on a socket that refuses them: the datagrams still leave one
by one; a refusal that says the kernel or device cannot segment (EIO) turns batching off at once; EINVAL (what a
segment over the path MTU gets) only after refusals in a row, since one path's MTU says nothing of the others."""

from __future__ import annotations

import errno
import socket
import sys
from types import SimpleNamespace

import pytest

from peerloom.torrent.utp_driver import GSO_MAX_REFUSALS, PMTUDISC_DO, UDP_SEGMENT, UtpDriver

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="UDP GSO is Linux's")
ADDRESS = ("127.0.0.1", 9)


class RefusingSocket:
    """A UDP socket whose kernel knows UDP_SEGMENT but refuses every batched send with `error`."""

    family = socket.AF_INET

    def __init__(self, error: int) -> None:
        self.error = error
        self.batches = 0
        self.sent: list[bytes] = []

    def getsockopt(self, level: int, option: int) -> int:
        return 0 if (level, option) == (socket.SOL_UDP, UDP_SEGMENT) else PMTUDISC_DO

    def setsockopt(self, level: int, option: int, value: int) -> None:
        pass

    def sendmsg(self, buffers: list[bytes], ancdata: list, flags: int, address: tuple[str, int]) -> int:
        self.batches += 1
        raise OSError(self.error, "refused")

    def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        self.sent.append(bytes(data))
        return len(data)


def driver_on(sock: RefusingSocket) -> UtpDriver:
    driver = UtpDriver()
    driver.attach({socket.AF_INET: (sock, SimpleNamespace(is_closing=lambda: False))})  # type: ignore[dict-item]
    return driver


def send_run(driver: UtpDriver, count: int = 5) -> list[bytes]:
    datagrams = [bytes([i]) * 1200 for i in range(count)]
    driver._send_all(SimpleNamespace(address=ADDRESS), datagrams)  # type: ignore[arg-type]
    return datagrams


def test_a_refused_batch_goes_one_by_one() -> None:
    sock = RefusingSocket(errno.EINVAL)
    driver = driver_on(sock)
    datagrams = send_run(driver)
    assert sock.batches == 1 and sock.sent == datagrams and driver.gso_sends == 0


def test_eio_turns_batching_off_at_once() -> None:
    sock = RefusingSocket(errno.EIO)
    driver = driver_on(sock)
    first, second = send_run(driver), send_run(driver)
    assert sock.batches == 1 and sock.sent == first + second  # the second run was never offered as a batch


def test_einval_again_and_again_turns_batching_off() -> None:
    sock = RefusingSocket(errno.EINVAL)
    driver = driver_on(sock)
    sent: list[bytes] = []
    for _ in range(GSO_MAX_REFUSALS + 3):
        sent += send_run(driver)
    assert sock.batches == GSO_MAX_REFUSALS and sock.sent == sent
