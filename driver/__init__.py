"""The virtio-net driver side of vnetbench.

It meets the device only through guest memory (:mod:`virtio.memory`), the virtio-mmio
register file (:class:`driver.bus.RegisterBus`), notifications and interrupts; it never
imports ``emulator/`` or ``testbench/``.

- :mod:`driver.bus` — the register interface the driver sees (§4.2.2).
- :mod:`driver.virtqueue` — the driver side of a split virtqueue (§2.7).
- :mod:`driver.transport` — initialization over the virtio-mmio registers (§3.1.1, §4.2.3).
- :mod:`driver.net` — the network driver, implementing :class:`stack.device.NetworkDevice`.
- :mod:`driver.counters` — what the driver counts.
"""
