"""Packet formats and the Internet checksum, defined once (DESIGN.md), with checked
parsing and emitting."""
