#!/usr/bin/env python3
"""Run a libosdp Control Panel on a serial device, controlling one or more PDs.

Usage:
  libosdp_cp.py --device PATH [--baud 115200] --pd ADDR[,scbk=HEX32][,install] ...

A PD given with scbk= gets FLAG_ENFORCE_SECURE (without it libosdp silently
falls back to plaintext when the key is wrong).

stdin  (JSON lines): led / buzzer / output / text / keyset / comset / mfg / quit
stdout (JSON lines): ready, online, offline, card, keypad, input, output_status,
                     status, mfg_reply, notification, completion, error
Exits on {"op":"quit"}, stdin EOF, SIGTERM/SIGINT/SIGHUP.
"""

import argparse
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c  # noqa: E402

import osdp  # noqa: E402

COLORS = {
    "black": 0, "none": 0, "off": 0, "red": 1, "green": 2, "amber": 3,
    "blue": 4, "magenta": 5, "cyan": 6, "white": 7,
}


def color(v, default):
    if v is None:
        return default
    if isinstance(v, int):
        return v
    return COLORS[str(v).lower()]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", required=True)
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--pd", action="append", required=True,
                    help="ADDR[,scbk=HEX32][,install] (repeatable)")
    ap.add_argument("--log-level", default="warning",
                    choices=["error", "warning", "info", "debug"])
    args = ap.parse_args()

    out = c.JsonOut()
    stop = threading.Event()
    c.install_stop_handlers(stop)
    specs = [c.parse_pd_spec(s) for s in args.pd]
    addrs = [s["address"] for s in specs]
    if len(set(addrs)) != len(addrs):
        raise SystemExit("duplicate PD address")
    level = {"error": osdp.LogLevel.Error, "warning": osdp.LogLevel.Warning,
             "info": osdp.LogLevel.Info, "debug": osdp.LogLevel.Debug}[args.log_level]

    bus = c.SerialBus(args.device, args.baud)
    # One channel object for all PDs: they share the bus, and libosdp
    # serialises PDs that share a channel.
    chan = c.make_channel(osdp, bus)
    infos = []
    for s in specs:
        if s["install"]:
            # CP-side install mode (provisioning a keyless PD): no
            # ENFORCE_SECURE, because libosdp's CP first tries the given SCBK
            # and must be allowed to fall back to SCBK-D.
            flags = [osdp.LibFlag.InstallMode]
        elif s["scbk"] is not None:
            flags = [osdp.LibFlag.EnforceSecure]
        else:
            flags = []
        info = osdp.PDInfo(s["address"], chan, scbk=s["scbk"],
                           name=f"pd-{s['address']}", flags=flags)
        _get = info.get
        info.get = (lambda g=_get: dict(g(), baud_rate=args.baud))
        infos.append(info)

    cp = osdp.ControlPanel(infos, log_level=level)

    def on_event(pd_index, ev):
        try:
            emit_event(out, addrs[pd_index], ev)
        except Exception as e:
            out.emit(event="error", error=f"event handler: {e}", raw=repr(ev))
        return 0

    def on_completion(addr, cmd, status):
        out.emit(event="completion", address=addr, command=cmd.get("command"),
                 status=status)

    cp.set_event_handler(on_event)
    cp.set_command_completion_handler(on_completion)

    def on_op(msg):
        op = msg.get("op")
        addr = int(msg.get("address", addrs[0]))
        if addr not in addrs:
            raise ValueError(f"no PD at address {addr}")
        cmd = build_command(op, msg)
        ok = cp.submit_command(addr, cmd)
        out.emit(event="submitted", op=op, address=addr, ok=bool(ok is None or ok))

    bus.start()
    cp.start()
    out.emit(event="ready", device=args.device, addresses=addrs)
    c.stdin_lines(out, stop, on_op)

    last = {a: (False, False) for a in addrs}
    try:
        while not stop.is_set():
            online = cp.status()
            sc = cp.sc_status()
            for i, a in enumerate(addrs):
                st = (bool(online & (1 << i)), bool(sc & (1 << i)))
                if st != last[a]:
                    if st[0]:
                        out.emit(event="online", address=a, secure=st[1])
                    else:
                        out.emit(event="offline", address=a, secure=st[1])
                    last[a] = st
            stop.wait(0.05)
    finally:
        try:
            cp.stop()
        except Exception:
            pass
        bus.close()
        out.emit(event="exit")
    os._exit(0)


def build_command(op, m):
    C = osdp.Command
    if op == "led":
        temporary = bool(m.get("temporary", False))
        cmd = {"command": C.LED, "reader": int(m.get("reader", 0)),
               "led_number": int(m.get("led_number", 0)),
               "control_code": int(m.get("control_code", 1 if not temporary else 2)),
               "on_color": color(m.get("color", m.get("on_color")), COLORS["green"]),
               "off_color": color(m.get("off_color"), 0),
               "on_count": int(m.get("on_count", 10)),
               "off_count": int(m.get("off_count", 0)),
               "temporary": temporary}
        if temporary:
            cmd["timer_count"] = int(m.get("timer", 10))
        return cmd
    if op == "buzzer":
        return {"command": C.Buzzer, "reader": int(m.get("reader", 0)),
                "control_code": int(m.get("control_code", 2)),
                "on_count": int(m.get("on_count", 10)),
                "off_count": int(m.get("off_count", 10)),
                "rep_count": int(m.get("rep_count", 1))}
    if op == "output":
        return {"command": C.Output, "output_no": int(m.get("output", 0)),
                "control_code": int(m.get("control_code", 1)),
                "timer_count": int(m.get("timer", 0))}
    if op == "text":
        return {"command": C.Text, "reader": int(m.get("reader", 0)),
                "control_code": int(m.get("control_code", 1)),
                "temp_time": int(m.get("temp_time", 0)),
                "offset_row": int(m.get("row", 1)), "offset_col": int(m.get("col", 1)),
                "data": str(m["data"])}
    if op == "keyset":
        return {"command": C.Keyset, "type": int(m.get("type", 1)),
                "data": bytes.fromhex(m["scbk"])}
    if op == "comset":
        return {"command": C.Comset, "address": int(m["new_address"]),
                "baud_rate": int(m.get("baud", 115200))}
    if op == "mfg":
        return {"command": C.Manufacturer, "vendor_code": int(m.get("vendor_code", 0)),
                "mfg_command": int(m.get("mfg_command", 0)),
                "data": bytes.fromhex(m.get("data", ""))}
    raise ValueError(f"unknown op {op!r}")


def emit_event(out, addr, ev):
    E = osdp.Event
    t = ev.get("event")
    if t == E.CardRead:
        fmt = {osdp.CardFormat.Unspecified: "raw", osdp.CardFormat.Wiegand: "wiegand",
               osdp.CardFormat.ASCII: "ascii"}.get(ev.get("format"), ev.get("format"))
        out.emit(event="card", address=addr, reader=ev.get("reader_no"),
                 data=bytes(ev.get("data", b"")).hex(), bits=ev.get("length"),
                 format=fmt, direction=ev.get("direction"))
    elif t == E.KeyPress:
        data = bytes(ev.get("data", b""))
        out.emit(event="keypad", address=addr, reader=ev.get("reader_no"),
                 digits=data.decode("latin-1"), data=data.hex())
    elif t == E.Status:
        typ = ev.get("type")
        name = {osdp.StatusReportType.Input: "input",
                osdp.StatusReportType.Output: "output_status",
                osdp.StatusReportType.Local: "local_status",
                osdp.StatusReportType.Remote: "remote_status"}.get(typ, "status")
        report = ev.get("report")
        if report is not None:  # libosdp 3.2.9: one byte per entry
            report = bytes(report)
            mask = sum(1 << i for i, b in enumerate(report) if b)
            out.emit(event=name, address=addr, type=typ, nr_entries=len(report),
                     mask=mask, report=report.hex())
        else:
            out.emit(event=name, address=addr, type=typ,
                     nr_entries=ev.get("nr_entries"), mask=ev.get("mask"))
    elif t == E.ManufacturerReply:
        out.emit(event="mfg_reply", address=addr, vendor_code=ev.get("vendor_code"),
                 mfg_command=ev.get("mfg_command"),
                 data=bytes(ev.get("data", b"")).hex())
    elif t == E.Notification:
        out.emit(event="notification", address=addr, type=ev.get("type"),
                 arg0=ev.get("arg0"), arg1=ev.get("arg1"))
    else:
        safe = {k: (v.hex() if isinstance(v, (bytes, bytearray)) else v)
                for k, v in ev.items()}
        out.emit(event="pd_event", address=addr, raw=safe)


if __name__ == "__main__":
    main()
