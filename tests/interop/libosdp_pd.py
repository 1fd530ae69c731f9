#!/usr/bin/env python3
"""Run one or more libosdp PDs on one serial device (multi-drop bus).

Usage:
  libosdp_pd.py --device PATH [--baud 115200] --pd ADDR[,scbk=HEX32][,install] ...

stdin  (JSON lines): card / keypad / input / quit   (see README.md)
stdout (JSON lines): ready, status, led, buzzer, output, text, keyset, comset,
                     mfg, command, error          (see README.md)
Exits on {"op":"quit"}, stdin EOF, SIGTERM/SIGINT/SIGHUP.
"""

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c  # noqa: E402

import osdp  # noqa: E402

NUM_INPUTS = 8
NUM_OUTPUTS = 4


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", required=True)
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--pd", action="append", required=True,
                    help="ADDR[,scbk=HEX32][,install] (repeatable)")
    ap.add_argument("--files", metavar="DIR",
                    help="accept osdp_FILETRANSFER: PD ADDR writes file ID to "
                         "DIR/pdADDR-fileID.bin and emits file_open / file_received")
    ap.add_argument("--log-level", default="warning",
                    choices=["error", "warning", "info", "debug"])
    args = ap.parse_args()

    out = c.JsonOut()
    stop = threading.Event()
    c.install_stop_handlers(stop)
    specs = [c.parse_pd_spec(s) for s in args.pd]
    if len({s["address"] for s in specs}) != len(specs):
        raise SystemExit("duplicate PD address")

    level = {"error": osdp.LogLevel.Error, "warning": osdp.LogLevel.Warning,
             "info": osdp.LogLevel.Info, "debug": osdp.LogLevel.Debug}[args.log_level]

    bus = c.SerialBus(args.device, args.baud)
    pds = {}
    input_masks = {}

    for spec in specs:
        addr = spec["address"]
        flags = []
        if spec["install"]:
            flags.append(osdp.LibFlag.InstallMode)
        info = osdp.PDInfo(addr, c.make_channel(osdp, bus), scbk=spec["scbk"],
                           name=f"pd-{addr}", flags=flags,
                           id=osdp.PdId(2, 1, 0x00A1B2, 0x1000 + addr, 0x010203))
        # PDInfo defaults to 9600 baud unless told (FINDINGS); set it where the
        # binding knows the key.
        info.baud_rate = args.baud
        _get = info.get
        info.get = (lambda g=_get: dict(g(), baud_rate=args.baud))
        caps = [
            (osdp.Capability.ContactStatusMonitoring, 1, NUM_INPUTS),
            (osdp.Capability.OutputControl, 1, NUM_OUTPUTS),
            (osdp.Capability.LEDControl, 1, 1),
            (osdp.Capability.AudibleControl, 1, 1),
            (osdp.Capability.TextOutput, 1, 1),
            (osdp.Capability.CardDataFormat, 1, 1),
            (osdp.Capability.CheckCharacter, 1, 0),
        ]
        if spec["scbk"] is not None or spec["install"]:
            caps.append((osdp.Capability.CommunicationSecurity, 1, 1))
        pd = osdp.PeripheralDevice(info, osdp.PDCapabilities(caps), log_level=level)
        pd.set_command_handler(make_handler(out, addr))
        pds[addr] = pd
        input_masks[addr] = 0

    def on_op(msg):
        op = msg.get("op")
        addr = int(msg.get("address", specs[0]["address"]))
        if addr not in pds:
            raise ValueError(f"no PD at address {addr}")
        pd = pds[addr]
        if op == "card":
            data = bytes.fromhex(msg["data"])
            bits = int(msg.get("bits", len(data) * 8))
            fmt = {"raw": osdp.CardFormat.Unspecified,
                   "wiegand": osdp.CardFormat.Wiegand,
                   "ascii": osdp.CardFormat.ASCII}[msg.get("format", "raw")]
            ev = {"event": osdp.Event.CardRead, "reader_no": int(msg.get("reader", 0)),
                  "format": fmt, "direction": 0, "data": data, "length": bits}
        elif op == "keypad":
            ev = {"event": osdp.Event.KeyPress, "reader_no": int(msg.get("reader", 0)),
                  "data": msg["digits"].encode("ascii")}
        elif op == "input":
            k = int(msg["input"])
            if msg.get("active", True):
                input_masks[addr] |= 1 << k
            else:
                input_masks[addr] &= ~(1 << k)
            # libosdp 3.2.9: status events carry "report", one byte per entry
            report = bytes((input_masks[addr] >> i) & 1 for i in range(NUM_INPUTS))
            ev = {"event": osdp.Event.Status, "type": osdp.StatusReportType.Input,
                  "report": report}
        else:
            raise ValueError(f"unknown op {op!r}")
        ok = pd.submit_event(ev)
        out.emit(event="submitted", op=op, address=addr, ok=bool(ok is None or ok))

    bus.start()
    for addr, pd in pds.items():
        pd.start()
        if args.files:
            # libosdp 3.2.9: register after start() (FINDINGS).
            if not pd.register_file_ops(file_ops(out, addr, args.files)):
                raise SystemExit(f"PD {addr}: register_file_ops failed")
    out.emit(event="ready", device=args.device,
             addresses=[s["address"] for s in specs])
    c.stdin_lines(out, stop, on_op)

    last = {a: (False, False) for a in pds}
    try:
        while not stop.is_set():
            for addr, pd in pds.items():
                st = (bool(pd.is_online()), bool(pd.is_sc_active()))
                if st != last[addr]:
                    last[addr] = st
                    out.emit(event="status", address=addr, online=st[0], secure=st[1])
            stop.wait(0.05)
    finally:
        for pd in pds.values():
            try:
                pd.stop()
            except Exception:
                pass
        bus.close()
        out.emit(event="exit")
    os._exit(0)


def file_ops(out, addr, directory):
    """libosdp file ops of one PD: a file on disk, written where the CP says."""
    state = {"f": None, "id": None, "size": 0, "written": 0}

    def open_(file_id, size):
        if state["f"] is not None:
            state["f"].close()
        path = os.path.join(directory, f"pd{addr}-file{file_id}.bin")
        state.update(f=open(path, "wb"), id=file_id, size=size, written=0)
        state["f"].truncate(size)
        out.emit(event="file_open", address=addr, file_id=file_id, size=size)
        return size

    def read(size, offset):
        return b""

    def write(data, offset):
        f = state["f"]
        if f is None or offset + len(data) > state["size"]:
            return -1
        f.seek(offset)
        f.write(data)
        state["written"] += len(data)
        return len(data)

    def close(file_id):
        f = state["f"]
        if f is None:
            return 0
        f.flush()
        os.fsync(f.fileno())
        f.close()
        state["f"] = None
        out.emit(event="file_received", address=addr, file_id=file_id,
                 size=state["size"], written=state["written"])
        return 0

    return {"open": open_, "read": read, "write": write, "close": close}


def make_handler(out, addr):
    def handler(cmd):
        try:
            emit_command(out, addr, cmd)
        except Exception as e:
            out.emit(event="error", address=addr, error=f"handler: {e}",
                     raw=repr(cmd))
        return 0, None
    return handler


def emit_command(out, addr, cmd):
    cid = cmd.get("command")
    C = osdp.Command
    if cid == C.LED:
        out.emit(event="led", address=addr, reader=cmd.get("reader"),
                 led_number=cmd.get("led_number"), temporary=cmd.get("temporary"),
                 control_code=cmd.get("control_code"), on_color=cmd.get("on_color"),
                 off_color=cmd.get("off_color"), on_count=cmd.get("on_count"),
                 off_count=cmd.get("off_count"), timer=cmd.get("timer_count"))
    elif cid == C.Buzzer:
        out.emit(event="buzzer", address=addr, reader=cmd.get("reader"),
                 control_code=cmd.get("control_code"), on_count=cmd.get("on_count"),
                 off_count=cmd.get("off_count"), rep_count=cmd.get("rep_count"))
    elif cid == C.Output:
        out.emit(event="output", address=addr, output=cmd.get("output_no"),
                 control_code=cmd.get("control_code"), timer=cmd.get("timer_count"))
    elif cid == C.Text:
        out.emit(event="text", address=addr, reader=cmd.get("reader"),
                 control_code=cmd.get("control_code"), temp_time=cmd.get("temp_time"),
                 row=cmd.get("offset_row"), col=cmd.get("offset_col"),
                 data=cmd.get("data"))
    elif cid == C.Keyset:
        out.emit(event="keyset", address=addr, type=cmd.get("type"),
                 scbk=bytes(cmd.get("data", b"")).hex().upper())
    elif cid == C.Comset:
        out.emit(event="comset", address=addr, new_address=cmd.get("address"),
                 baud=cmd.get("baud_rate"))
    elif cid == C.Manufacturer:
        # libosdp 3.2.9 passes vendor_code and data only (no mfg_command key)
        out.emit(event="mfg", address=addr, vendor_code=cmd.get("vendor_code"),
                 mfg_command=cmd.get("mfg_command"),
                 data=bytes(cmd.get("data", b"")).hex().upper())
    elif cid == C.ComsetDone:
        out.emit(event="comset_done", address=addr, new_address=cmd.get("address"),
                 baud=cmd.get("baud_rate"))
    else:
        safe = {k: (v.hex() if isinstance(v, (bytes, bytearray)) else v)
                for k, v in cmd.items()}
        out.emit(event="command", address=addr, raw=safe)


if __name__ == "__main__":
    main()
