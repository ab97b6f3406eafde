"""What many tests share: the default seed's IDs and a clock that moves only when told to."""

from __future__ import annotations

import socket
import time

from emulator import DEMO_CREDENTIAL

PID = DEMO_CREDENTIAL.project_id
WEB1 = "1b3c5e7f-0000-4000-8000-00000000aaaa"
WEB2 = "1b3c5e7f-0000-4000-8000-00000000a002"
DB1_SHUTOFF = "1b3c5e7f-0000-4000-8000-00000000a003"
BATCH1_LOCKED = "1b3c5e7f-0000-4000-8000-00000000a004"
CLUSTER1 = "1b3c5e7f-0000-4000-8000-00000000a005"
CLUSTER2 = "1b3c5e7f-0000-4000-8000-00000000a006"
WEB1_SYSTEM = "2c4d6e8f-0000-4000-8000-000000000001"
WEB1_DATA = "2c4d6e8f-0000-4000-8000-00000000bbbb"
WEB1_LOGS = "2c4d6e8f-0000-4000-8000-00000000cccc"
WEB2_DATA = "2c4d6e8f-0000-4000-8000-00000000b002"
DB1_SYSTEM = "2c4d6e8f-0000-4000-8000-000000000003"
DB1_DATA = "2c4d6e8f-0000-4000-8000-00000000b003"
BATCH1_DATA = "2c4d6e8f-0000-4000-8000-00000000b004"
SHARED = "2c4d6e8f-0000-4000-8000-00000000dddd"
SPARE = "2c4d6e8f-0000-4000-8000-00000000eeee"
UNKNOWN = "2c4d6e8f-0000-4000-8000-0000000fffff"

START = 1_705_307_400.0  # 2024-01-15T08:30:00Z


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def seconds_until_cut_off(client: socket.socket, head: bytes, every_s: float = 0.05) -> float | None:
    """Send ``head`` a byte every ``every_s`` (a slowloris client); the seconds after which the
    server closed the connection, or None when it took the whole head."""
    started = time.monotonic()
    for byte in head:
        try:
            client.sendall(bytes([byte]))
            client.setblocking(False)
            if client.recv(1) == b"":
                return time.monotonic() - started
        except BlockingIOError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
        finally:
            client.setblocking(True)
        time.sleep(every_s)
    return None
