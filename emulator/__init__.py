"""The device ("the hardware"): transport, device-side virtqueues, the net device and the
conformance monitor. It never imports driver/ or testbench/; it meets the driver only
through guest memory, registers, notifications and interrupts (DESIGN.md)."""
