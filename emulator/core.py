"""The device core: status, features, queues, interrupts and configuration space,
independent of how the driver reaches them (§2, §3.1).

A transport front (the virtio-mmio register file now, a vhost-user server later) turns
register accesses into calls on :class:`DeviceCore`; a :class:`DeviceFunction` (the net
device) supplies what is type specific. Every rule the driver breaks on this path is
recorded in the :class:`~emulator.monitor.Monitor` (who="driver") and turned into state:
the write is refused or ignored, or the device sets DEVICE_NEEDS_RESET (§2.1.2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from emulator.monitor import DRIVER, Monitor
from emulator.virtqueue import ChainError, DeviceQueue
from virtio import spec
from virtio.constants import FeatureBit, InterruptStatus, Status
from virtio.errors import DeviceProtocolError, GuestMemoryError, RingError
from virtio.features import FeatureSet, Violation
from virtio.memory import GuestMemory

STATUS_BITS = int(
    Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK | Status.FEATURES_OK
    | Status.DEVICE_NEEDS_RESET | Status.FAILED
)
"""The status bits §2.1 defines; the others are reserved."""
INTERRUPT_BITS = int(InterruptStatus.USED_BUFFER | InterruptStatus.CONFIG_CHANGE)
FEATURE_WORDS = 8
"""32-bit feature words the device keeps (bits 0..255); a set bit beyond them is a feature
the device cannot have offered."""
QUEUE_AREAS = ("desc", "driver", "device")
"""The three areas of a queue (§2.6): descriptor, driver (available) and device (used)."""

_ORDER: tuple[tuple[Status, Status | None, str, spec.Section], ...] = (
    (Status.ACKNOWLEDGE, None, "", spec.DEVICE_INIT),
    (Status.DRIVER, Status.ACKNOWLEDGE, "status-order", spec.DEVICE_INIT),
    (Status.FEATURES_OK, Status.DRIVER, "status-order", spec.DEVICE_INIT),
    (Status.DRIVER_OK, Status.FEATURES_OK, "driver-ok-without-features-ok", spec.DEVICE_INIT),
)
"""Each initialization bit, the bit that must be set before it (§3.1.1), and the rule."""

_DRIVER_OK = int(Status.DRIVER_OK)
_LIVE_MASK = int(Status.DRIVER_OK | Status.DEVICE_NEEDS_RESET | Status.FAILED)
_STOPPED = int(Status.DEVICE_NEEDS_RESET | Status.FAILED)
_USED_BUFFER_STATUS = InterruptStatus.USED_BUFFER
_USED_BUFFER = int(InterruptStatus.USED_BUFFER)
_CONFIG_CHANGE = int(InterruptStatus.CONFIG_CHANGE)


class DeviceFunction(Protocol):
    """What a device type provides to the core."""

    device_id: int
    num_queues: int
    queue_size_max: int

    def bind(self, core: DeviceCore) -> None:
        """Called once by :class:`DeviceCore` 's constructor."""
        ...

    def offered_features(self) -> FeatureSet: ...

    def check_features(self, accepted: FeatureSet) -> list[Violation]:
        """Type-specific reasons to refuse ``accepted`` beyond
        :meth:`FeatureSet.driver_violations`; empty = acceptable."""
        ...

    def config_bytes(self) -> bytes: ...

    def write_config(self, offset: int, data: bytes) -> None:
        """The driver wrote the configuration space."""
        ...

    def activate(self, core: DeviceCore) -> None:
        """DRIVER_OK was set: start, and process buffers made available before it."""
        ...

    def queue_notify(self, index: int) -> None: ...

    def interrupt_raised(self, bits: InterruptStatus) -> None:
        """The core raised an interrupt (for the function's counters)."""
        ...

    def reset(self) -> None: ...


@dataclass
class QueueConfig:
    """What the transport wrote for one queue (§4.2.2 QueueSize, QueueDesc/Driver/Device,
    QueueReady). Change it through :class:`DeviceCore`, which checks each write."""

    size: int
    desc: int = 0
    driver: int = 0
    device: int = 0
    ready: bool = False


def _feature_rule(v: Violation) -> str:
    if v.rule is not None:
        return "feature-dependency"
    if v.section == spec.FEATURE_BITS_DRIVER:
        return "feature-not-offered"
    if v.feature == FeatureBit.VERSION_1:
        return "feature-version-1-not-accepted"
    return "feature-refused"


def _status_names(bits: int) -> str:
    return "|".join(s.name or "?" for s in Status if bits & s) or "0"


class DeviceCore:
    """Status state machine, feature negotiation, queues and interrupts of one device."""

    def __init__(self, function: DeviceFunction, memory: GuestMemory, monitor: Monitor) -> None:
        self.function = function
        self.memory = memory
        self.monitor = monitor
        self.on_interrupt: Callable[[], None] | None = None
        self.config_generation = 0
        self.device_features: FeatureSet = function.offered_features()
        self.status = 0
        self.driver_features = FeatureSet()
        self.interrupt_status = 0
        self._driver_words: dict[int, int] = {}
        self._stray_words: set[int] = set()
        self._configs: list[QueueConfig] = []
        self._queues: list[DeviceQueue | None] = []
        self._init_state()
        function.bind(self)

    def _init_state(self) -> None:
        n = self.function.num_queues
        self.status = 0
        self.driver_features = FeatureSet()
        self.interrupt_status = 0
        self._driver_words = {}
        self._stray_words = set()
        self._configs = [QueueConfig(self.function.queue_size_max) for _ in range(n)]
        self._queues = [None] * n

    def __repr__(self) -> str:
        return f"DeviceCore(status={_status_names(self.status)}, features={self.driver_features})"

    # helpers
    def _violation(
        self, rule: str, section: spec.Section | str, detail: str, *,
        action: str, queue: int | None = None,
    ) -> None:
        self.monitor.record(DRIVER, rule, str(section), detail, queue=queue, action=action)

    @property
    def live(self) -> bool:
        """DRIVER_OK set, and neither DEVICE_NEEDS_RESET nor FAILED."""
        return self.status & _LIVE_MASK == _DRIVER_OK

    # queues
    def has_queue(self, index: int) -> bool:
        return 0 <= index < self.function.num_queues

    def queue(self, index: int) -> DeviceQueue | None:
        """The enabled queue ``index``, or None."""
        return self._queues[index] if self.has_queue(index) else None

    def queue_config(self, index: int) -> QueueConfig:
        if not self.has_queue(index):
            raise ValueError(f"the device has no queue {index}")
        return self._configs[index]

    def _queue_writable(self, index: int, register: str) -> QueueConfig | None:
        """The config of ``index`` if the driver may change ``register`` now (§4.2.2.2:
        not while QueueReady; §3.1.1: queues are set up before DRIVER_OK)."""
        if not self.has_queue(index):
            self._violation("queue-index-out-of-range", spec.MMIO_REGISTERS_DRIVER,
                            f"{register} written for queue {index}, which the device lacks "
                            f"(it has {self.function.num_queues})", action="ignored", queue=index)
            return None
        config = self._configs[index]
        if config.ready:
            self._violation("queue-setup-while-ready", spec.MMIO_REGISTERS_DRIVER,
                            f"{register} written while queue {index} is ready",
                            action="refused", queue=index)
            return None
        if self.status & Status.DRIVER_OK:
            self._violation("queue-setup-after-driver-ok", spec.DEVICE_INIT,
                            f"{register} written for queue {index} after DRIVER_OK",
                            action="refused", queue=index)
            return None
        return config

    def set_queue_size(self, index: int, size: int) -> None:
        """QueueSize; checked when the queue is enabled."""
        config = self._queue_writable(index, "QueueSize")
        if config is not None:
            config.size = size

    def set_queue_area(self, index: int, area: str, address: int) -> None:
        """The guest-physical address of area ``desc``, ``driver`` or ``device``."""
        if area not in QUEUE_AREAS:
            raise ValueError(f"queue area must be one of {QUEUE_AREAS}, not {area!r}")
        config = self._queue_writable(index, f"Queue{area.capitalize()}")
        if config is not None:
            setattr(config, area, address)

    def set_queue_ready(self, index: int, ready: bool) -> None:
        """QueueReady. Enabling builds and validates the :class:`DeviceQueue`; a queue
        the device cannot use is refused (QueueReady reads back 0) and recorded."""
        if not ready:
            if self.has_queue(index):
                self._configs[index].ready = False
                self._queues[index] = None
            return
        if self.has_queue(index) and self._configs[index].ready:
            return
        config = self._queue_writable(index, "QueueReady")
        if config is None:
            return
        if not self.status & Status.FEATURES_OK:
            self._violation("queue-enable-before-features-ok", spec.DEVICE_INIT,
                            f"queue {index} enabled before FEATURES_OK",
                            action="refused", queue=index)
            return
        qmax = self.function.queue_size_max
        if config.size > qmax:
            self._violation("queue-size-exceeds-max", spec.MMIO_REGISTERS_DRIVER,
                            f"queue {index} size {config.size} exceeds QueueSizeMax {qmax}",
                            action="refused", queue=index)
            return
        q = DeviceQueue(
            index, config.size, config.desc, config.driver, config.device,
            event_idx=FeatureBit.EVENT_IDX in self.driver_features,
            indirect=FeatureBit.INDIRECT_DESC in self.driver_features,
        )
        try:
            q.validate(self.memory)
        except ChainError as err:
            self.monitor.record_error(err, queue=index, action="refused")
            return
        config.ready = True
        self._queues[index] = q

    # status, §2.1 and §3.1.1
    def set_status(self, value: int) -> None:
        """The driver wrote the device status. 0 resets; otherwise bits are only added,
        in the order of §3.1.1, and FEATURES_OK only sticks for acceptable features."""
        if value == 0:
            self.reset()
            return
        old = self.status
        if value & ~STATUS_BITS:
            self._violation("status-reserved-bits", spec.DEVICE_STATUS,
                            f"reserved status bits {value & ~STATUS_BITS:#x} written",
                            action="ignored")
            value &= STATUS_BITS
        if value & Status.DEVICE_NEEDS_RESET and not old & Status.DEVICE_NEEDS_RESET:
            self._violation("status-device-bit", spec.DEVICE_STATUS,
                            "the driver set DEVICE_NEEDS_RESET, which only the device sets",
                            action="ignored")
            value &= ~Status.DEVICE_NEEDS_RESET
        cleared = old & ~value
        if cleared:
            self._violation("status-bit-cleared", spec.DEVICE_STATUS_DRIVER,
                            f"status {_status_names(old)} written as {_status_names(value)}: "
                            f"{_status_names(cleared)} cleared without a reset",
                            action="refused")
        new_bits = value & ~old
        if new_bits & Status.FAILED:
            self.status |= int(Status.FAILED)
        for bit, need, rule, section in _ORDER:
            if not new_bits & bit:
                continue
            if need is not None and not self.status & need:
                self._violation(rule, section, f"{bit.name} set before {need.name}",
                                action="refused")
                continue
            if bit is Status.FEATURES_OK and not self._accept_features():
                continue
            self.status |= int(bit)
            if bit is Status.DRIVER_OK and self.live:
                self._guarded(None, lambda: self.function.activate(self))

    def _accept_features(self) -> bool:
        """§2.2 / §3.1.1 step 5-6: the device refuses (FEATURES_OK does not stick) a
        subset it cannot accept, and says why in the monitor."""
        violations = self.driver_features.driver_violations(self.device_features)
        violations += self.function.check_features(self.driver_features)
        for word in sorted(self._stray_words):
            self.monitor.record(
                DRIVER, "feature-not-offered", str(spec.FEATURE_BITS_DRIVER),
                f"feature word {word} accepted, the device offers none there",
                action="refused")
        for v in violations:
            self.monitor.record(DRIVER, _feature_rule(v), str(v.section), str(v),
                                action="refused")
        return not violations and not self._stray_words

    def reset(self) -> None:
        """Device reset (§2.4): status, features, queues and interrupt status cleared."""
        self._init_state()
        self.function.reset()

    def write_driver_features(self, word: int, value: int) -> None:
        """32-bit word ``word`` of the driver features; refused after FEATURES_OK."""
        value &= 0xFFFF_FFFF
        if self.status & Status.FEATURES_OK:
            self._violation("features-after-features-ok", spec.DEVICE_INIT,
                            f"driver features word {word} written ({value:#x}) after "
                            "FEATURES_OK", action="refused")
            return
        if word >= FEATURE_WORDS:
            if value:
                self._stray_words.add(word)
            else:
                self._stray_words.discard(word)
            return
        self._driver_words[word] = value
        bits = 0
        for w, v in self._driver_words.items():
            bits |= v << (32 * w)
        self.driver_features = FeatureSet(bits)

    # notifications and interrupts
    def notify(self, index: int) -> None:
        """An available buffer notification for queue ``index`` (§2.3)."""
        if self.status & _STOPPED:
            return
        if not self.status & _DRIVER_OK:
            self._violation("notify-before-driver-ok", spec.DEVICE_INIT,
                            f"queue {index} notified before DRIVER_OK",
                            action="ignored", queue=index)
            return
        if not self.has_queue(index):
            self._violation("notify-unknown-queue", spec.NOTIFICATIONS,
                            f"notification for queue {index}, which the device lacks",
                            action="ignored", queue=index)
            return
        if self._queues[index] is None:
            self._violation("notify-queue-not-ready", spec.NOTIFICATIONS,
                            f"notification for queue {index}, which is not ready",
                            action="ignored", queue=index)
            return
        self._guarded(index, lambda: self.function.queue_notify(index))

    def _guarded(self, queue: int | None, action: Callable[[], None]) -> None:
        """Run device work; a rule the driver broke becomes DEVICE_NEEDS_RESET."""
        try:
            action()
        except DeviceProtocolError as err:
            self.fail(err, queue=queue)
        except GuestMemoryError as err:
            self.fail(RingError(str(err), rule="ring-out-of-memory",
                                section=spec.SPLIT_VIRTQUEUES), queue=queue)

    def raise_interrupt(self, bits: InterruptStatus) -> bool:
        """Set ``bits`` in the interrupt status and call :attr:`on_interrupt`. Used
        buffer notifications only while live (§3.1.2: none before DRIVER_OK),
        configuration changes once DRIVER_OK is set. Returns whether anything was
        raised."""
        status = self.status
        allowed = 0
        if status & _DRIVER_OK:
            allowed = _CONFIG_CHANGE
            if status & _LIVE_MASK == _DRIVER_OK:
                allowed |= _USED_BUFFER
        value = int(bits) & allowed
        if not value:
            return False
        self.interrupt_status |= value
        self.function.interrupt_raised(
            _USED_BUFFER_STATUS if value == _USED_BUFFER else InterruptStatus(value))
        if self.on_interrupt is not None:
            self.on_interrupt()
        return True

    def ack_interrupt(self, bits: int) -> None:
        """InterruptACK (§4.2.2): clears the handled bits."""
        if bits & ~INTERRUPT_BITS:
            self._violation("interrupt-ack-undefined-bits", spec.MMIO_REGISTERS_DRIVER,
                            f"InterruptACK {bits:#x} sets undefined bits", action="ignored")
        self.interrupt_status &= ~bits & INTERRUPT_BITS

    # configuration space, §2.5
    def config_bytes(self) -> bytes:
        return self.function.config_bytes()

    def write_config(self, offset: int, data: bytes) -> None:
        self.function.write_config(offset, data)

    def config_changed(self, *, notify: bool = True) -> None:
        """The configuration space changed: new generation, and (``notify``) a
        configuration change notification."""
        self.config_generation = (self.config_generation + 1) & 0xFFFF_FFFF
        if notify:
            self.raise_interrupt(InterruptStatus.CONFIG_CHANGE)

    def fail(
        self, err: DeviceProtocolError, *, queue: int | None = None,
        descriptor: int | None = None,
    ) -> None:
        """The driver broke a rule the device cannot recover from: record it, set
        DEVICE_NEEDS_RESET and send a configuration change notification (§2.1.2). The
        device then touches no ring until reset."""
        if isinstance(err, ChainError):
            queue = err.queue if queue is None else queue
            descriptor = err.descriptor if descriptor is None else descriptor
        self.monitor.record_error(err, queue=queue, descriptor=descriptor, action="needs-reset")
        if self.status & Status.DEVICE_NEEDS_RESET:
            return
        self.status |= int(Status.DEVICE_NEEDS_RESET)
        self.raise_interrupt(InterruptStatus.CONFIG_CHANGE)
