//! OSDP wire framing.
