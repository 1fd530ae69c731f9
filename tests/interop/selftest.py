#!/usr/bin/env python3
"""Self-test: libosdp_pd.py and libosdp_cp.py against each other over a socat
PTY pair. Every wait is a deadline on a JSON-line condition, never a sleep.

Usage: selftest.py [--capture DIR]   (DIR keeps socat -x hex dumps per case)
Exit status 0 when every case passes.
"""

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = os.environ.get("PORTIER_PYTHON") or sys.executable
KEY = "A1B2C3D4E5F60718293A4B5C6D7E8F90"
OTHER_KEY = "0F1E2D3C4B5A69788796A5B4C3D2E1F0"  # not SCBK-D (30..3F)
SCBK_D = "303132333435363738393A3B3C3D3E3F"  # default install key, only for install
TIMEOUT = 15.0


class Proc:
    def __init__(self, name, argv):
        self.name = name
        self.p = subprocess.Popen([PY, "-u"] + argv, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, bufsize=1)
        self.q = queue.Queue()
        self.lines = []
        self.err = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump(self):
        for line in self.p.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                msg = {"event": "garbage", "line": line}
            self.lines.append(msg)
            self.q.put(msg)
        self.q.put(None)

    def _pump_err(self):
        for line in self.p.stderr:
            self.err.append(line.rstrip())

    def send(self, **msg):
        self.p.stdin.write(json.dumps(msg) + "\n")
        self.p.stdin.flush()

    def expect(self, pred, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: timeout waiting for {what}; "
                                     f"seen {self.lines[-8:]} stderr {self.err[-5:]}")
            try:
                msg = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if msg is None:
                raise AssertionError(f"{self.name}: exited while waiting for {what}; "
                                     f"stderr {self.err[-5:]}")
            if pred(msg):
                return msg

    def never(self, pred, what, duration):
        """Assert no line matching pred arrives within duration seconds."""
        deadline = time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                msg = self.q.get(timeout=left)
            except queue.Empty:
                return
            if msg is not None and pred(msg):
                raise AssertionError(f"{self.name}: unexpected {what}: {msg}")

    def stop(self):
        if self.p.poll() is None:
            try:
                self.send(op="quit")
                self.p.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.terminate()
                try:
                    self.p.wait(3)
                except subprocess.TimeoutExpired:
                    self.p.kill()
                    self.p.wait()


class Bus:
    def __init__(self, tmp, capture_file=None):
        self.a = os.path.join(tmp, "a")
        self.b = os.path.join(tmp, "b")
        argv = ["socat", "-d", "-d"]
        if capture_file:
            argv.append("-x")
        argv += [f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"]
        self.log = open(capture_file or os.devnull, "w")
        self.p = subprocess.Popen(argv, stderr=self.log, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not (os.path.exists(self.a) and os.path.exists(self.b)):
            if time.monotonic() > deadline or self.p.poll() is not None:
                raise AssertionError("socat did not create the PTY pair")
            time.sleep(0.02)

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(3)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.log.close()


def is_ev(name, **fields):
    return lambda m: m.get("event") == name and all(m.get(k) == v for k, v in fields.items())


def run_case(name, pd_specs, cp_specs, body, capture_dir):
    tmp = tempfile.mkdtemp(prefix="osdp-selftest-")
    cap = os.path.join(capture_dir, f"{name}.socat.log") if capture_dir else None
    bus = Bus(tmp, cap)
    procs = []
    t0 = time.monotonic()
    try:
        pd_argv = [os.path.join(HERE, "libosdp_pd.py"), "--device", bus.a, "--baud", "115200"]
        for s in pd_specs:
            pd_argv += ["--pd", s]
        cp_argv = [os.path.join(HERE, "libosdp_cp.py"), "--device", bus.b, "--baud", "115200"]
        for s in cp_specs:
            cp_argv += ["--pd", s]
        pd = Proc("pd", pd_argv)
        procs.append(pd)
        pd.expect(is_ev("ready"), "pd ready")
        cp = Proc("cp", cp_argv)
        procs.append(cp)
        cp.expect(is_ev("ready"), "cp ready")
        t_start = time.monotonic()
        body(pd, cp, t_start)
        print(f"PASS {name} ({time.monotonic() - t0:.2f} s)", flush=True)
        return True
    except AssertionError as e:
        print(f"FAIL {name}: {e}", flush=True)
        return False
    finally:
        for p in procs:
            p.stop()
        bus.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def timed(t_start, label):
    print(f"  {label}: {time.monotonic() - t_start:.3f} s after CP start", flush=True)


def case_plain(pd, cp, t):
    cp.expect(is_ev("online", address=1, secure=False), "plain online")
    timed(t, "plaintext online")
    pd.send(op="card", address=1, data="9501f480", bits=26)
    m = cp.expect(is_ev("card", address=1), "card at CP")
    assert m["data"] == "9501f480" and m["bits"] == 26 and m["format"] == "raw", m
    pd.send(op="keypad", address=1, digits="1234")
    m = cp.expect(is_ev("keypad", address=1), "keypad at CP")
    assert m["digits"] == "1234", m
    pd.send(op="input", address=1, input=2, active=True)
    m = cp.expect(is_ev("input", address=1), "input at CP")
    assert m["mask"] == 4, m
    cp.send(op="led", address=1, color="red")
    m = pd.expect(is_ev("led", address=1), "LED at PD")
    assert m["on_color"] == 1 and m["control_code"] == 1, m
    cp.send(op="buzzer", address=1)
    pd.expect(is_ev("buzzer", address=1), "BUZ at PD")
    cp.send(op="output", address=1, output=1, control_code=2, timer=5)
    m = pd.expect(is_ev("output", address=1), "OUT at PD")
    assert (m["output"], m["control_code"], m["timer"]) == (1, 2, 5), m


def case_sc(pd, cp, t):
    cp.expect(is_ev("online", address=1, secure=True), "secure online")
    timed(t, "SC online (CP)")
    pd.expect(is_ev("status", address=1, online=True, secure=True), "PD sees SC")
    pd.send(op="card", address=1, data="9501f480", bits=26)
    m = cp.expect(is_ev("card", address=1), "card at CP over SC")
    assert m["data"] == "9501f480", m
    cp.send(op="led", address=1, color="green")
    m = pd.expect(is_ev("led", address=1), "LED at PD over SC")
    assert m["on_color"] == 2, m


def case_multidrop(pd, cp, t):
    seen = set()
    while len(seen) < 2:
        m = cp.expect(lambda m: m.get("event") == "online", "both PDs online")
        seen.add(m["address"])
        if m["address"] == 2:
            assert m["secure"] is True, m
    timed(t, "two PDs online (1 plain, 2 SC)")
    pd.send(op="card", address=2, data="0102030405", bits=40)
    m = cp.expect(is_ev("card", address=2), "card from PD 2")
    assert m["data"] == "0102030405" and m["bits"] == 40, m
    cp.send(op="output", address=1, output=0, control_code=1, timer=0)
    pd.expect(is_ev("output", address=1), "OUT at PD 1")
    cp.send(op="buzzer", address=2)
    pd.expect(is_ev("buzzer", address=2), "BUZ at PD 2")
    for m in pd.lines:
        if m.get("event") in ("output", "buzzer", "led"):
            pass  # each PD only reports commands addressed to it (checked below)
    assert not any(m.get("event") == "buzzer" and m.get("address") == 1 for m in pd.lines)


def case_wrong_key(pd, cp, t):
    cp.never(lambda m: m.get("event") == "online", "CP online with wrong key", 8.0)
    # (the libosdp PD itself does report online=True, secure=False: it hears
    # the CP's plaintext POLL/ID/CAP before the failed SC handshake)
    assert not any(m.get("event") == "online" for m in cp.lines)


def case_install(pd, cp, t):
    # PD keyless in install mode; CP given the new key plus `install`: libosdp's
    # CP fails SC with the key, retries with SCBK-D, then sends KEYSET itself
    # and re-establishes SC with the new key.
    m = pd.expect(is_ev("keyset", address=1), "KEYSET at PD")
    assert m["scbk"] == KEY, m
    timed(t, "install: KEYSET received by PD")
    cp.expect(is_ev("online", address=1, secure=True), "SC online after install")
    timed(t, "install: CP secure online")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--capture", help="directory for socat -x hex dumps")
    ap.add_argument("--only", help="run only this case")
    args = ap.parse_args()
    if args.capture:
        os.makedirs(args.capture, exist_ok=True)
    cases = [
        ("plaintext", ["1"], ["1"], case_plain),
        ("secure_channel", [f"1,scbk={KEY}"], [f"1,scbk={KEY}"], case_sc),
        ("multidrop", ["1", f"2,scbk={KEY}"], ["1", f"2,scbk={KEY}"], case_multidrop),
        ("wrong_key", [f"1,scbk={KEY}"], [f"1,scbk={OTHER_KEY}"], case_wrong_key),
        ("install_keyset", ["1,install"], [f"1,scbk={KEY},install"], case_install),
    ]
    ok = True
    for name, pds, cps, body in cases:
        if args.only and args.only != name:
            continue
        ok &= run_case(name, pds, cps, body, args.capture)
    print("selftest:", "OK" if ok else "FAILED", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
