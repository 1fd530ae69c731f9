//! How a bus's serial port is to be opened: settings the config parses and
//! the serial driver uses (the config owns them, so it imports no driver).

use std::path::PathBuf;

/// How the RS-485 transceiver's direction is switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rs485Mode {
    /// The adapter switches by itself (most USB–RS-485 adapters).
    #[default]
    Adapter,
    /// The kernel's RS-485 mode (`TIOCSRS485`, RTS on send).
    Kernel,
}

/// How to open a serial port.
#[derive(Debug, Clone)]
pub struct PortSettings {
    /// Device path, e.g. `/dev/ttyUSB0`.
    pub path: PathBuf,
    /// 9600..=230400.
    pub baud: u32,
    /// Direction control.
    pub rs485: Rs485Mode,
    /// Discard our own transmitted bytes when the adapter echoes them.
    pub suppress_echo: bool,
}
