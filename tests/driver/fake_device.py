"""A deliberately small virtio-mmio net device for the driver's tests only.

Not the emulator (the driver's tests must not import ``emulator/``): it serves registers
from plain values, records what the driver writes (status sequence, feature words, queue
registers, notifications, acks) and, like rust-vmm's ``virtio-queue/src/mock.rs``, reads
and writes split rings straight in guest memory so a test can consume avail entries and
produce used entries byte by byte. It trusts the driver and checks nothing: that is the
emulator's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from driver.virtqueue import DriverQueue
from virtio.constants import MMIO_MAGIC, MMIO_VERSION, DescFlag, MmioReg, Status
from virtio.features import FeatureSet
from virtio.layouts import DESC, NET_CONFIG, USED_ELEM, SplitRingGeometry
from virtio.memory import GuestMemory
from virtio.net_hdr import NetHdr


def net_config(mac: bytes = bytes.fromhex("525400123456"), status: int = 1, mtu: int = 1500) -> bytes:
    """virtio_net_config bytes (§5.1.4) through the layout's struct twin."""
    return NET_CONFIG.fmt.pack(*mac, status, 1, mtu, 0, 0, 0, 0, 0)


@dataclass
class Chain:
    head: int
    readable: list[tuple[int, int]]
    writable: list[tuple[int, int]]
    descs: list[tuple[int, int, int, int]]  # raw (addr, len, flags, next) as walked


class FakeRing:
    """The device's view of one split ring (§2.7), straight on guest memory."""

    def __init__(self, memory: GuestMemory, size: int, desc: int, avail: int, used: int) -> None:
        self.memory, self.size = memory, size
        self.desc, self.avail, self.used = desc, avail, used
        self.geo = SplitRingGeometry(size)
        self.last_avail = memory.read_u16(avail + 2)
        self.used_idx = memory.read_u16(used + 2)

    @classmethod
    def of(cls, q: DriverQueue) -> FakeRing:
        return cls(q.memory, q.size, q.desc_addr, q.avail_addr, q.used_addr)

    @property
    def avail_idx(self) -> int:
        return self.memory.read_u16(self.avail + 2)

    @property
    def avail_flags(self) -> int:
        return self.memory.read_u16(self.avail)

    @property
    def used_event(self) -> int:
        return self.memory.read_u16(self.avail + self.geo.used_event)

    def set_used_flags(self, flags: int) -> None:
        self.memory.write_u16(self.used, flags)

    def set_avail_event(self, value: int) -> None:
        self.memory.write_u16(self.used + self.geo.avail_event, value)

    def pending(self) -> int:
        return (self.avail_idx - self.last_avail) & 0xFFFF

    def _desc(self, table: int, i: int) -> tuple[int, int, int, int]:
        raw = self.memory.read(table + DESC.size * i, DESC.size)
        addr, length, flags, nxt = DESC.fmt.unpack(raw)
        return int(addr), int(length), int(flags), int(nxt)

    def pop(self) -> Chain | None:
        if not self.pending():
            return None
        slot = self.last_avail % self.size
        head = self.memory.read_u16(self.avail + self.geo.avail_entry(slot))
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        chain = Chain(head, [], [], [])
        table, i, budget = self.desc, head, self.size
        while budget > 0:
            budget -= 1
            d = self._desc(table, i)
            chain.descs.append(d)
            addr, length, flags, nxt = d
            if flags & DescFlag.INDIRECT:
                table, i, budget = addr, 0, length // DESC.size
                continue
            (chain.writable if flags & DescFlag.WRITE else chain.readable).append((addr, length))
            if not flags & DescFlag.NEXT:
                return chain
            i = nxt
        raise AssertionError("descriptor chain loops")

    def push_used(self, head: int, length: int) -> None:
        slot = self.used_idx % self.size
        self.memory.write(self.used + self.geo.used_entry(slot), USED_ELEM.fmt.pack(head, length))
        self.used_idx = (self.used_idx + 1) & 0xFFFF
        self.memory.write_u16(self.used + 2, self.used_idx)

    def read(self, chain: Chain) -> bytes:
        return b"".join(self.memory.read(a, n) for a, n in chain.readable)

    def write(self, chain: Chain, data: bytes) -> int:
        """Write ``data`` across the writable part (as much as fits); bytes written."""
        pos = 0
        for addr, length in chain.writable:
            piece = data[pos : pos + length]
            self.memory.write(addr, piece)
            pos += len(piece)
        return pos


@dataclass
class QueueRegs:
    num_max: int
    num: int = 0
    ready: int = 0
    addrs: dict[str, int] = field(default_factory=dict)

    def addr(self, area: str) -> int:
        """The 64-bit address written to Queue<area>Low/High."""
        return self.addrs.get(f"QUEUE_{area}_LOW", 0) | self.addrs.get(f"QUEUE_{area}_HIGH", 0) << 32


class FakeDevice:
    """A virtio-mmio v2 register file (§4.2.2) for one net device."""

    def __init__(
        self, memory: GuestMemory, features: FeatureSet, *, config: bytes | None = None,
        queue_max: int = 256, magic: int = MMIO_MAGIC, version: int = MMIO_VERSION,
        device_id: int = 1,
    ) -> None:
        self.memory, self.features = memory, features
        self.ident = {MmioReg.MAGIC_VALUE: magic, MmioReg.VERSION: version,
                      MmioReg.DEVICE_ID: device_id, MmioReg.VENDOR_ID: 0x554D4551}
        self.config = bytearray(net_config() if config is None else config)
        self.queue_max = queue_max
        self.status = 0
        self.isr = 0
        self.generation = 0
        # knobs
        self.refuse_features_ok = False
        self.reset_stuck = False
        self.generation_flips = 0  # ConfigGeneration changes on this many next reads
        # records
        self.log: list[tuple[str, int, int]] = []
        self.status_writes: list[int] = []
        self.driver_features: dict[int, int] = {}
        self.notifications: list[int] = []
        self.acks: list[int] = []
        self.rings: dict[int, FakeRing] = {}
        self._reset_queues()

    def _reset_queues(self) -> None:
        self.queues = {i: QueueRegs(self.queue_max) for i in range(2)}
        self.rings = {}
        self.sel = {"dev": 0, "drv": 0, "queue": 0}

    @property
    def driver_feature_set(self) -> FeatureSet:
        return FeatureSet(sum(w << (32 * s) for s, w in self.driver_features.items()))

    def set_config(self, offset: int, data: bytes) -> None:
        self.config[offset : offset + len(data)] = data
        self.generation += 1

    def interrupt(self, bits: int) -> None:
        self.isr |= bits

    def read(self, offset: int, size: int = 4) -> int:
        value = self._read(offset, size)
        self.log.append(("r", offset, value))
        return value

    def _read(self, offset: int, size: int) -> int:
        if offset >= MmioReg.CONFIG:
            off = offset - MmioReg.CONFIG
            return int.from_bytes(self.config[off : off + size].ljust(size, b"\0"), "little")
        reg = MmioReg(offset)
        q = self.queues.get(self.sel["queue"])
        if reg in self.ident:
            return self.ident[reg]
        if reg is MmioReg.DEVICE_FEATURES:
            return self.features.word(self.sel["dev"])
        if reg is MmioReg.QUEUE_NUM_MAX:
            return q.num_max if q else 0
        if reg is MmioReg.QUEUE_READY:
            return q.ready if q else 0
        if reg is MmioReg.INTERRUPT_STATUS:
            return self.isr
        if reg is MmioReg.STATUS:
            return Status.ACKNOWLEDGE if self.reset_stuck else self.status
        if reg is MmioReg.CONFIG_GENERATION:
            if self.generation_flips:
                self.generation_flips -= 1
                self.generation += 1
            return self.generation
        raise AssertionError(f"driver read write-only/unknown register {reg!r}")

    def write(self, offset: int, value: int, size: int = 4) -> None:
        self.log.append(("w", offset, value))
        reg = MmioReg(offset)
        q = self.queues.get(self.sel["queue"])
        if reg is MmioReg.STATUS:
            self.status_writes.append(value)
            if value == 0:
                self.status, self.isr = 0, 0
                self._reset_queues()
            elif self.refuse_features_ok:
                self.status = value & ~Status.FEATURES_OK
            else:
                self.status = value
        elif reg is MmioReg.DEVICE_FEATURES_SEL:
            self.sel["dev"] = value
        elif reg is MmioReg.DRIVER_FEATURES_SEL:
            self.sel["drv"] = value
        elif reg is MmioReg.DRIVER_FEATURES:
            self.driver_features[self.sel["drv"]] = value
        elif reg is MmioReg.QUEUE_SEL:
            self.sel["queue"] = value
        elif reg is MmioReg.QUEUE_NUM and q:
            q.num = value
        elif reg.name.startswith("QUEUE_") and reg.name.endswith(("_LOW", "_HIGH")) and q:
            q.addrs[reg.name] = value
        elif reg is MmioReg.QUEUE_READY and q:
            q.ready = value
            if value:
                self.rings[self.sel["queue"]] = FakeRing(
                    self.memory, q.num, q.addr("DESC"), q.addr("DRIVER"), q.addr("DEVICE"))
        elif reg is MmioReg.QUEUE_NOTIFY:
            self.notifications.append(value)
        elif reg is MmioReg.INTERRUPT_ACK:
            self.acks.append(value)
            self.isr &= ~value
        else:
            raise AssertionError(f"driver wrote read-only/unknown register {reg!r}")

    # net device helpers
    def receive(self, frame: bytes, hdr: NetHdr | None = None, *, used_len: int | None = None,
                header_size: int = 12) -> int:
        """Put one frame into the next RX buffer (header + frame) and return it used."""
        ring = self.rings[0]
        chain = ring.pop()
        assert chain is not None, "no RX buffer available"
        header = (hdr or NetHdr(num_buffers=1)).emit(header_size)
        written = ring.write(chain, header + frame)
        ring.push_used(chain.head, written if used_len is None else used_len)
        return chain.head

    def transmitted(self) -> list[bytes]:
        """Consume every TX chain (header included) and return each used with len 0."""
        ring, out = self.rings[1], []
        while (chain := ring.pop()) is not None:
            out.append(ring.read(chain))
            ring.push_used(chain.head, 0)
        return out
