"""Shared helpers for the libosdp interop harness (serial device, JSON I/O).

Used by libosdp_pd.py and libosdp_cp.py; not a test by itself.
"""

import errno
import json
import os
import select
import signal
import sys
import termios
import threading
import time

BAUDS = {
    9600: termios.B9600,
    19200: termios.B19200,
    38400: termios.B38400,
    57600: termios.B57600,
    115200: termios.B115200,
    230400: termios.B230400,
}


class JsonOut:
    """JSON lines on the *original* stdout; fd 1 is redirected to stderr so
    anything libosdp's C code (or a stray print) writes cannot corrupt the
    protocol stream."""

    def __init__(self):
        sys.stdout.flush()
        self._f = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._lock = threading.Lock()
        self.t0 = time.monotonic()

    def emit(self, **obj):
        obj.setdefault("t", round(time.monotonic() - self.t0, 3))
        line = json.dumps(obj, separators=(",", ":"))
        with self._lock:
            try:
                self._f.write(line + "\n")
                self._f.flush()
            except (BrokenPipeError, ValueError):
                pass


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def open_serial(path, baud):
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        attrs = termios.tcgetattr(fd)
        # cfmakeraw equivalent
        iflag, oflag, cflag, lflag, _ispeed, _ospeed, cc = attrs
        iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                   | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON
                   | termios.IXOFF | termios.IXANY)
        oflag &= ~termios.OPOST
        lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG
                   | termios.IEXTEN)
        cflag &= ~(termios.CSIZE | termios.PARENB | termios.CSTOPB | termios.CRTSCTS)
        cflag |= termios.CS8 | termios.CREAD | termios.CLOCAL
        speed = BAUDS.get(baud, termios.B115200)
        cc[termios.VMIN] = 0
        cc[termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW,
                          [iflag, oflag, cflag, lflag, speed, speed, cc])
    except termios.error as e:
        log(f"warning: termios setup on {path} failed: {e}")
    return fd


class SerialBus:
    """One serial device shared by several libosdp contexts.

    A reader thread owns all reads from the fd and copies every byte into
    each registered tap's buffer (fan-out), so every PD on a multi-drop bus
    sees the whole byte stream and answers only its own address."""

    def __init__(self, path, baud):
        self.fd = open_serial(path, baud)
        self._wlock = threading.Lock()
        self._taps = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._reader, name="bus-reader",
                                        daemon=True)

    def tap(self):
        t = _Tap(self)
        self._taps.append(t)
        return t

    def start(self):
        self._thread.start()

    def _reader(self):
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self.fd], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                data = os.read(self.fd, 4096)
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno == errno.EIO:  # peer side of the pty closed
                    time.sleep(0.05)
                    continue
                return
            if data:
                for t in self._taps:
                    t._push(data)

    def write_all(self, buf):
        buf = bytes(buf)
        deadline = time.monotonic() + 1.0
        with self._wlock:
            off = 0
            while off < len(buf):
                try:
                    off += os.write(self.fd, buf[off:])
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        return 0
                    select.select([], [self.fd], [], 0.05)
                except OSError:
                    return 0
        return len(buf)

    def close(self):
        self._stop.set()
        self._thread.join(1)
        try:
            os.close(self.fd)
        except OSError:
            pass


class _Tap:
    def __init__(self, bus):
        self._bus = bus
        self._buf = bytearray()
        self._lock = threading.Lock()

    def _push(self, data):
        with self._lock:
            self._buf += data

    def read(self, max_bytes):
        with self._lock:
            n = min(max_bytes, len(self._buf))
            out = bytes(self._buf[:n])
            del self._buf[:n]
        return out

    def write(self, buf):
        return self._bus.write_all(buf)

    def flush(self):
        with self._lock:
            self._buf.clear()


def make_channel(osdp_module, bus):
    """libosdp Channel backed by a fan-out tap of `bus`."""
    tap = bus.tap()

    class BusChannel(osdp_module.Channel):
        def read(self, max_bytes):
            return tap.read(max_bytes)

        def write(self, buf):
            return tap.write(buf)

        def flush(self):
            tap.flush()

    return BusChannel()


def parse_pd_spec(spec):
    """'ADDR[,scbk=HEX32][,install]' -> dict(address, scbk bytes|None, install)"""
    parts = spec.split(",")
    out = {"address": int(parts[0], 0), "scbk": None, "install": False}
    for p in parts[1:]:
        if p.startswith("scbk="):
            key = bytes.fromhex(p[5:])
            if len(key) != 16:
                raise SystemExit(f"scbk must be 16 bytes hex: {p}")
            out["scbk"] = key
        elif p == "install":
            out["install"] = True
        elif p:
            raise SystemExit(f"unknown --pd option: {p}")
    if not 0 <= out["address"] <= 126:
        raise SystemExit(f"bad PD address {out['address']}")
    return out


def install_stop_handlers(stop_event):
    def handler(_sig, _frm):
        stop_event.set()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGHUP, handler)


def stdin_lines(out, stop_event, on_op):
    """Read JSON lines from stdin until EOF/quit; runs in a daemon thread."""
    def run():
        try:
            for raw in sys.stdin:
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    msg = json.loads(raw)
                    op = msg.get("op")
                    if op == "quit":
                        break
                    on_op(msg)
                except Exception as e:  # report, keep going
                    out.emit(event="error", error=str(e), line=raw)
        finally:
            stop_event.set()
    t = threading.Thread(target=run, name="stdin", daemon=True)
    t.start()
    return t
