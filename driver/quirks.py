"""Driver quirks: named switches that make the driver misbehave the way real drivers have.

Each :class:`Quirk` says what it does, which rule it breaks (the rule name the device's
conformance monitor records, or the driver-side symptom when the device cannot see it),
the spec section or convention, and the real bug or fix it models where one is known.
A driver gets them through ``DriverConfig(quirks=frozenset({...}))``; the hooks are small
and sit where the real drivers went wrong: negotiation and header building here, ring
faults and receive-side mistakes in :mod:`driver.quirk_queue` and :mod:`driver.rx`.

The device never imports this module (DESIGN.md: driver and device meet only through
guest memory and registers); it recognises a quirk by the rule it breaks.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from stack.wire.checksum import pseudo_header_sum_v4, pseudo_header_sum_v6
from virtio import spec
from virtio.constants import GSO_ECN, FeatureBit, GsoType, NetHdrFlag
from virtio.features import FeatureSet
from virtio.net_hdr import NetHdr

F = FeatureBit

NEGOTIATION = "negotiation"
TRANSMIT = "transmit"
RING = "ring"
RECEIVE = "receive"
FAMILIES = (NEGOTIATION, TRANSMIT, RING, RECEIVE)


@dataclass(frozen=True)
class Quirk:
    """One way of breaking the driver."""

    name: str
    family: str
    description: str
    breaks: str
    """The rule name that shows the quirk: what the device's monitor records, or (in
    parentheses) the driver-side or traffic symptom when the device cannot tell."""
    reference: str
    """The spec section it breaks, or the convention it deviates from."""
    models: str = ""
    """The real bug or fix it reproduces, where one is known."""


def _q(name: str, family: str, description: str, breaks: str,  # noqa: PLR0917
       reference: spec.Section | str, models: str = "") -> Quirk:
    return Quirk(name, family, description, breaks, str(reference), models)


_ALL = (
    # negotiation, §2.2 / §3.1.1
    _q("accept-not-offered", NEGOTIATION,
       "write a feature the device did not offer into the driver features",
       "feature-not-offered", spec.FEATURE_BITS_DRIVER),
    _q("accept-without-dependency", NEGOTIATION,
       "accept GUEST_TSO4 without GUEST_CSUM (a feature without its dependency)",
       "feature-dependency", spec.NET_FEATURE_REQUIREMENTS),
    _q("skip-version-1", NEGOTIATION,
       "leave VERSION_1 out of the accepted features",
       "feature-version-1-not-accepted", spec.RESERVED_FEATURE_BITS_DRIVER,
       "rcore-os/virtio-drivers PR #196 (a COQOS hypervisor refused the driver)"),
    _q("no-features-ok-check", NEGOTIATION,
       "do not re-read status after setting FEATURES_OK; go on as if it stuck",
       "driver-ok-without-features-ok", spec.DEVICE_INIT),
    _q("features-after-features-ok", NEGOTIATION,
       "write the driver features again after FEATURES_OK",
       "features-after-features-ok", spec.DEVICE_INIT),
    _q("driver-ok-before-queues", NEGOTIATION,
       "set DRIVER_OK before the virtqueues are set up",
       "queue-setup-after-driver-ok", spec.DEVICE_INIT),
    _q("use-not-negotiated", NEGOTIATION,
       "use offloads the device offered but the driver did not accept (GSO, checksum), "
       "and send control commands whatever was negotiated",
       "tx-gso-not-negotiated", spec.NET_TX_DRIVER),
    # transmit headers, §5.1.6.2
    _q("gso-size-zero", TRANSMIT, "gso_size 0 on a GSO packet", "gso-size-zero",
       spec.NET_TX_DRIVER),
    _q("gso-without-needs-csum", TRANSMIT, "a gso_type without NEEDS_CSUM",
       "gso-without-needs-csum", spec.NET_TX_DRIVER),
    _q("gso-type-mismatch", TRANSMIT,
       "TCPV6 for an IPv4 packet and TCPV4 for an IPv6 one", "gso-type-mismatch",
       spec.NET_TX),
    _q("csum-offset-wrong", TRANSMIT,
       "csum_offset of UDP (6) for TCP, of TCP (16) for UDP", "csum-offset-tcp",
       spec.NET_TX_DRIVER),
    _q("csum-start-wrong", TRANSMIT,
       "csum_start counted from the IP header instead of the frame (14 bytes short)",
       "csum-start-not-transport", spec.NET_TX_DRIVER,
       "NetKVM PR #1487: ipHeaderOffset left 0 when Windows disables checksum offload"),
    _q("seed-length-zero", TRANSMIT,
       "pseudo-header seed with length 0 (the Windows/NDIS LSO convention)",
       "csum-seed-zero-length", spec.NET_TX_DRIVER,
       "openvmm PR #3812: a length-less LSO seed through a Linux tap"),
    _q("seed-missing", TRANSMIT,
       "no pseudo-header seed at all: the checksum field left 0",
       "csum-seed-other", spec.NET_TX_DRIVER,
       "DPDK 00a5ea02e12f: the seed was lost when Tx prepare was introduced"),
    _q("hdr-len-wrong", TRANSMIT,
       "hdr_len = the whole frame (Linux's skb_headlen of a linear skb)",
       "hdr-len-inexact", spec.NET_TX_DRIVER,
       "Linux merge 673bb63d2006: hdr_len for GUEST_HDRLEN came from skb_headlen()"),
    _q("data-valid-on-tx", TRANSMIT, "DATA_VALID set on transmit", "tx-hdr-flags",
       spec.NET_TX_DRIVER),
    _q("header-size-mismatch", TRANSMIT,
       "a header shorter than the negotiated one (12 bytes with HASH_REPORT, 10 with "
       "VERSION_1)", "(frame shifted: wrong bytes on the wire)", spec.NET_TX,
       "oasis-tcs/virtio-spec issue #183: HASH_REPORT changes the TX header size too"),
    _q("ecn-without-cwr", TRANSMIT, "the ECN gso bit on TCP packets without CWR",
       "tx-ecn-without-cwr", spec.NET_TX_DRIVER),
    # rings, §2.7
    _q("avail-idx-jump", RING, "move avail.idx by more than the queue size",
       "avail-idx-jump", spec.AVAIL_RING, "QEMU CVE-2016-5403 (virtqueue_pop)"),
    _q("descriptor-loop", RING, "the last descriptor of a chain points back to its head",
       "chain-too-long", spec.DESC_TABLE_DRIVER),
    _q("nested-indirect", RING, "an indirect table whose entry is itself INDIRECT",
       "indirect-nested", spec.INDIRECT_DESC_DRIVER),
    _q("address-outside-memory", RING,
       "a buffer address beyond guest memory", "desc-addr-out-of-memory", spec.DESC_TABLE),
    _q("reuse-in-flight", RING,
       "make a chain available twice while the device still owns it",
       "(driver: used-id-not-in-flight)", spec.SUPPLYING_BUFFERS),
    _q("ignore-event-idx", RING,
       "with EVENT_IDX, suppress interrupts with avail.flags and decide kicks by "
       "used.flags, as without it", "avail-flags-with-event-idx",
       spec.USED_NOTIF_SUPPRESSION),
    _q("rx-refill-no-kick", RING,
       "refill the receive ring without notifying the device",
       "(device: rx-no-buffer with buffers posted)", spec.AVAIL_NOTIF_SUPPRESSION),
    # receive, §5.1.6.4
    _q("trust-used-len", RECEIVE, "take used.len as it is, even beyond the buffer",
       "(driver reads past its buffer)", spec.USED_RING_DRIVER,
       "openvmm PR #3119 (a device that over-reported used.len)"),
    _q("ignore-num-buffers", RECEIVE,
       "treat every used buffer as one packet (num_buffers ignored)",
       "(packets split into garbage frames)", spec.NET_RX_DRIVER,
       "Hermit's workaround for MLX5 sending num_buffers != 1 without MRG_RXBUF"),
    _q("rx-needs-csum-as-verified", RECEIVE,
       "a received NEEDS_CSUM packet handed up as checksum-verified",
       "(partial checksums forwarded as good)", spec.NET_RX_DRIVER,
       "FreeBSD vtnet, fixed by commit 3008f30d2c2c (D51686, PR 165059)"),
    _q("rx-needs-csum-as-plain", RECEIVE,
       "a received NEEDS_CSUM packet handed up as a plain one: the partial checksum is "
       "neither completed nor marked", "(the stack drops good packets as bad checksums)",
       spec.NET_RX_DRIVER, "NetKVM issue #1630"),
    _q("rx-len-from-descriptor", RECEIVE,
       "the packet length taken from the descriptor, not from used.len",
       "(frames padded to the buffer size)", spec.USED_RING,
       "au-ts/sddf PR #506"),
    _q("rx-small-buffers", RECEIVE,
       "MTU-sized receive buffers although GUEST_TSO was negotiated without MRG_RXBUF",
       "rx-buffer-too-small", spec.NET_RX_BUFFERS_DRIVER,
       "OSv issue #1058 on Firecracker (no MRG_RXBUF)"),
)

QUIRKS: dict[str, Quirk] = {q.name: q for q in _ALL}


def check_quirks(names: Iterable[str]) -> frozenset[str]:
    """``names`` as a frozenset; ``ValueError`` naming the closest known quirks for an
    unknown one."""
    out = frozenset(names)
    for name in sorted(out):
        if name not in QUIRKS:
            close = difflib.get_close_matches(name, list(QUIRKS), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown driver quirk {name!r}{hint}")
    return out


# negotiation
def negotiation_quirks(accepted: FeatureSet, offered: FeatureSet,
                       quirks: frozenset[str]) -> FeatureSet:
    """The feature set a quirky driver writes instead of ``accepted``."""
    if "accept-not-offered" in quirks:
        stray = next((f for f in (F.RING_PACKED, F.SPEED_DUPLEX, F.GUEST_UFO)
                      if f not in offered), None)
        if stray is not None:
            accepted = accepted | FeatureSet.of(stray)
    if "accept-without-dependency" in quirks and F.GUEST_TSO4 in offered:
        accepted = (accepted | FeatureSet.of(F.GUEST_TSO4)) - FeatureSet.of(F.GUEST_CSUM)
    if "skip-version-1" in quirks:
        accepted = accepted - FeatureSet.of(F.VERSION_1)
    return accepted


# transmit
_SWAP_GSO = {int(GsoType.TCPV4): int(GsoType.TCPV6), int(GsoType.TCPV6): int(GsoType.TCPV4)}
_NEEDS_CSUM = int(NetHdrFlag.NEEDS_CSUM)


def _seed_without_length(frame: bytes) -> int | None:
    """The pseudo-header sum with length 0 for an IPv4/IPv6 frame (no VLAN, no IPv6
    extension headers), or None."""
    if len(frame) < 54:
        return None
    ethertype = frame[12] << 8 | frame[13]
    if ethertype == 0x0800:
        return pseudo_header_sum_v4(frame[26:30], frame[30:34], frame[23], 0)
    if ethertype == 0x86DD:
        return pseudo_header_sum_v6(frame[22:38], frame[38:54], frame[20], 0)
    return None


def _with_checksum_field(frame: bytes, at: int, value: int) -> bytes:
    if at + 2 > len(frame):
        return frame
    return frame[:at] + value.to_bytes(2, "big") + frame[at + 2:]


def tx_quirks(hdr: NetHdr, frame: bytes, quirks: frozenset[str],
              header_size: int) -> tuple[NetHdr, bytes, int]:
    """The header, frame and header size a quirky driver sends instead."""
    gso = hdr.gso_type != GsoType.NONE
    csum = bool(hdr.flags & _NEEDS_CSUM)
    if gso and "gso-size-zero" in quirks:
        hdr = hdr.with_(gso_size=0)
    if gso and "gso-without-needs-csum" in quirks:
        hdr = hdr.with_(flags=hdr.flags & ~_NEEDS_CSUM)
    if gso and "gso-type-mismatch" in quirks and hdr.gso_kind in _SWAP_GSO:
        hdr = hdr.with_(gso_type=_SWAP_GSO[hdr.gso_kind] | (hdr.gso_type & GSO_ECN))
    if gso and "ecn-without-cwr" in quirks and hdr.gso_kind in _SWAP_GSO:
        hdr = hdr.with_(gso_type=hdr.gso_type | GSO_ECN)
    if csum:
        field = hdr.csum_start + hdr.csum_offset
        if "seed-length-zero" in quirks:
            seed = _seed_without_length(frame)
            if seed is not None:
                frame = _with_checksum_field(frame, field, seed)
        if "seed-missing" in quirks:
            frame = _with_checksum_field(frame, field, 0)
        if "csum-offset-wrong" in quirks:
            hdr = hdr.with_(csum_offset=6 if hdr.csum_offset == 16 else 16)
        if "csum-start-wrong" in quirks:
            hdr = hdr.with_(csum_start=max(0, hdr.csum_start - 14))
    if gso and "hdr-len-wrong" in quirks:
        hdr = hdr.with_(hdr_len=len(frame))
    if "data-valid-on-tx" in quirks:
        hdr = hdr.with_(flags=hdr.flags | NetHdrFlag.DATA_VALID)
    if "header-size-mismatch" in quirks:
        header_size = 12 if header_size > 12 else 10
    return hdr, frame, header_size
