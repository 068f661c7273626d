"""Device profiles: how a device treats the virtio_net_hdr a driver sends with a packet.

The spec (§5.1.6.2) says what a driver must put in the header, and leaves undefined most
of what a device does with a header that breaks those rules or does not match its
packet. Real devices differ there. A :class:`Profile` names, for each rule of
``emulator.offload.rules`` (a stable rule name), the :class:`Action` a device takes, and
picks whose segmentation and checksum arithmetic to reproduce (:class:`Engine`,
:class:`SeedPolicy`, ``big_packets``):

``strict``
    The spec. Breaking a MUST (gso without NEEDS_CSUM, gso_size 0, a checksum field
    outside the packet, a seed that is no pseudo-header sum...) refuses the packet;
    anything the spec leaves undefined (IPv4 options under TSO, a gso_type that does not
    match the packet, a length field that disagrees with the frame...) is dropped and
    recorded. Segments follow the RFCs: FIN/PSH on the last, CWR on the first, IPv4 ID
    +1, pseudo headers recomputed per segment.
``linux``
    What the Linux 6.18 tap path does with a frame written to a tap device with
    IFF_VNET_HDR, bridged to a tap without offloads: ``tun_get_user`` →
    ``tun_vnet_hdr_get`` → ``virtio_net_hdr_to_skb`` (REJECT: the write fails with
    EINVAL) → bridge → ``validate_xmit_skb`` → ``skb_gso_segment`` (DROP: the skb is
    freed, nothing comes out) or ``skb_checksum_help``; FIX is what the kernel silently
    rewrites. The segments are the bytes the kernel emits, including its quirks (a
    length-0 pseudo-header seed yields wrong checksums; UFO clears DF).
``qemu``
    QEMU's software offload, ``hw/net/net_tx_pkt.c`` as used when the peer backend
    takes no vnet header: seeds ignored and pseudo headers recomputed, FIN and PSH
    cleared on every segment, UFO fragments aligned to 8 bytes, no USO, nothing above
    64 KiB.
``firecracker``
    Firecracker's virtio-net (``src/vmm/src/devices/virtio/net/device.rs``): a small
    fixed feature set (no control queue, no STATUS, no indirect descriptors), no
    segmentation or header checks of its own — the guest's header goes to the host tap
    as it is, so the Linux tap path decides (the ``linux`` actions) — and the tap's
    header comes back to the guest with ``num_buffers`` set by the device.
``firecracker-legacy``
    Firecracker before 2024: no MRG_RXBUF, ``num_buffers`` left 0, and the tap's
    receive offloads set from what the device *offered* rather than what the driver
    accepted (issue #3905), so a driver that declined GUEST_TSO still gets 64 KiB
    packets.

Feature-level checks (a gso_type whose HOST_ feature was not negotiated, ECN without
HOST_ECN, NEEDS_CSUM without CSUM) belong to the device, not to the profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType
from typing import Any

from virtio.constants import FeatureBit
from virtio.features import FeatureSet


class Action(Enum):
    """What a device does when a rule is broken."""

    REJECT = "reject"
    """Refused outright: on Linux the write() to the tap fails with EINVAL."""
    DROP = "drop"
    """Accepted, then dropped later: on Linux the skb is freed during segmentation."""
    FIX = "fix"
    """Accepted and silently repaired; the repair is recorded as a note."""
    ALLOW = "allow"
    """Accepted as is (the engine's natural behaviour); recorded only when the driver
    broke a spec rule."""


class SeedPolicy(Enum):
    """How segmentation derives each segment's pseudo-header sum."""

    ADJUST = "adjust"
    """Linux: trust the driver's seed and adjust it by each segment's length change
    (``tcp_gso_segment``, ``__udp_gso_segment``); a length-0 seed then yields wrong
    checksums on the wire — the symptom users reproduce."""
    RECOMPUTE = "recompute"
    """QEMU ``net_tx_pkt_do_sw_csum`` (and the strict device): recompute each segment's
    pseudo header from the IP header, ignoring the seed."""


class Engine(Enum):
    """Whose segmentation arithmetic to reproduce where implementations legitimately
    differ (flag handling, UFO fragment geometry, zero checksums, packets that fit in one
    segment)."""

    SPEC = "spec"
    LINUX = "linux"
    QEMU = "qemu"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    sources: tuple[str, ...]
    """Where each behaviour comes from (file and function of Linux/QEMU, spec section)."""
    actions: Mapping[str, Action] = field(hash=False)
    """Rule name -> action; :meth:`action` returns REJECT for a rule not listed."""
    seed: SeedPolicy
    big_packets: bool
    """IP packets over 65535 bytes (IPv4 total length 0, IPv6 payload length 0) accepted."""
    engine: Engine = Engine.SPEC
    rx_pass_offloads: bool = False
    """A received packet whose checksum is partial or that is a GSO packet (a backend
    such as a tap with a vnet header hands over what a local sender left unfinished):
    True passes NEEDS_CSUM / the gso fields on to a driver that accepted them (Linux tap
    ``virtio_net_hdr_from_skb``, QEMU forwarding the tap's header); False has the device
    finish the checksum and segment itself, delivering plain verified packets (both are
    allowed by §5.1.6.4.1)."""
    offered: FeatureSet | None = None
    """Features the device offers; None: everything the emulated device implements."""
    rx_num_buffers_zero: bool = False
    """Without MRG_RXBUF, leave ``num_buffers`` 0 in received headers instead of 1
    (§5.1.6.4.1 says 1; Firecracker did this before commit fb66e22ff3c6)."""
    rx_offloads_from_offered: bool = False
    """Receive offloads follow what the device offered, not what the driver accepted
    (§5.1.6.4.1 breaks; Firecracker before commit 1e5d3dba6a92, issue #3905)."""
    skip_bad_chains: bool = False
    """A chain the device cannot walk (a loop, a buffer outside memory, a nested
    indirect table) is returned unused (used.len 0) and counted, and the queue goes on;
    False: DEVICE_NEEDS_RESET (QEMU ``virtio_error``, vhost ``vq_err``). A bad avail
    index stops the queue either way."""
    rx_num_buffers_early: bool = False
    """With MRG_RXBUF, the header of a packet spanning several buffers says
    ``num_buffers`` 1: what a driver saw from a device that published the first buffer
    before the others and counted up afterwards (kvmtool before 3fea89a92451)."""
    rx_oversize_retry_ns: int = 0
    """Without MRG_RXBUF, a frame larger than the receive buffer is kept and tried again
    after this many ns, forever (Firecracker before 1e5d3dba6a92: the hang of issue
    #3905); 0: dropped and counted."""
    rx_used_len_extra: int = 0
    """Bytes ``used.len`` over-reports on the last buffer of a received packet
    (§2.7.8.1 breaks; openvmm virtio_net before PR #3119 reported 12 too many)."""

    def __post_init__(self) -> None:
        if not isinstance(self.actions, MappingProxyType):
            object.__setattr__(self, "actions", MappingProxyType(dict(self.actions)))

    def action(self, rule: str) -> Action:
        return self.actions.get(rule, Action.REJECT)

    def derive(self, name: str, *, actions: Mapping[str, Action] | None = None,
               **changes: Any) -> Profile:
        """A copy under another name, with some actions (or other fields) overridden."""
        merged = dict(self.actions)
        merged.update(actions or {})
        return replace(self, name=name, actions=merged, **changes)


R, D, F, A = Action.REJECT, Action.DROP, Action.FIX, Action.ALLOW

# rule name: (strict, linux, qemu). The rules themselves (condition, reference) are in
# emulator/offload/rules.py; a test checks that the two lists agree.
_TABLE: dict[str, tuple[Action, Action, Action]] = {
    # Header against frame: Linux checks these when the frame is written (tun_get_user,
    # tun_vnet_hdr_get, virtio_net_hdr_to_skb).
    "frame-too-short": (A, R, A),
    "gso-type-unknown": (R, R, R),
    "ecn-without-gso": (D, R, A),
    "gso-type-unsupported": (A, A, R),
    "gso-size-zero": (R, R, D),
    "gso-size-by-frags": (A, R, A),
    "csum-outside-frame": (R, R, D),
    "hdr-len-beyond-frame": (A, R, A),
    "hdr-len-below-ethernet": (A, R, A),
    "csum-start-below-ip-minimum": (A, R, A),
    "transport-header-truncated": (R, R, D),
    "gso-without-needs-csum": (R, F, D),
    "uso-without-needs-csum": (R, R, R),
    "csum-offset-tcp": (R, R, D),
    "csum-offset-uso": (R, R, R),
    "csum-offset-ufo": (R, A, D),
    "uso-ecn": (D, R, R),
    "ufo-ecn": (D, A, A),
    "uso-too-many-segments": (A, R, R),
    "hdr-len-inexact": (R, A, A),
    "hdr-len-short": (A, A, A),
    "gso-single-segment": (A, F, A),
    # Packet checks at segmentation time (Linux: skb_mac_gso_segment, inet_gso_segment,
    # ipv6_gso_segment, tcp_gso_segment, __udp_gso_segment, udp4/6_ufo_fragment).
    "gso-not-ip": (D, D, D),
    "ip-header-truncated": (D, D, D),
    "ipv4-ihl-invalid": (D, D, D),
    "ip-version-mismatch": (D, A, D),
    "ipv4-options": (D, A, A),
    "ipv4-fragment": (D, A, A),
    "ip-packet-too-big": (D, A, D),
    "ip-length-mismatch": (D, F, F),
    "ipv6-exthdr-truncated": (D, D, D),
    "ipv6-hop-by-hop-not-first": (D, A, A),
    "ipv6-fragment-header": (D, D, D),
    "ipv6-jumbo-hop-by-hop": (D, F, D),
    "gso-type-mismatch": (D, D, D),
    "csum-start-not-transport": (R, D, D),
    "ufo-csum-start-not-transport": (R, A, D),
    "tcp-data-offset-invalid": (D, D, D),
    "tcp-header-truncated": (D, D, D),
    "gso-payload-within-mss": (A, D, A),
    "cwr-without-ecn": (D, A, A),
    "udp-length-mismatch": (D, A, A),
    "ufo-gso-size-too-small": (D, A, D),
    "ufo-gso-size-unaligned": (D, A, F),
    "ufo-dont-fragment": (D, F, A),
    "ufo-ipv6": (A, A, D),
    "ufo-ipv6-fragmentable-exthdr": (D, A, D),
    # The pseudo-header seed (§5.1.6.2.1: the checksum field holds the pseudo-header sum).
    "csum-seed-zero-length": (F, A, F),
    "csum-seed-other": (R, A, F),
    # Device-level checks (emulator/net/device.py): against the negotiated features and
    # the MTU. Real backends never look at either; the strict device drops and records.
    "tx-gso-not-negotiated": (D, A, A),
    "tx-ecn-not-negotiated": (D, A, A),
    "tx-csum-not-negotiated": (D, A, A),
    "tx-segment-exceeds-mtu": (D, A, A),
}


def _actions(column: int) -> dict[str, Action]:
    return {rule: row[column] for rule, row in _TABLE.items()}


RULE_NAMES: tuple[str, ...] = tuple(_TABLE)

STRICT = Profile(
    name="strict",
    description=(
        "The virtio spec: refuse a header that breaks a driver MUST of §5.1.6.2.1, drop "
        "and record anything the spec leaves undefined, segment per the RFCs with "
        "pseudo headers recomputed per segment."
    ),
    sources=(
        "virtio-v1.2 §5.1.6.2 Packet Transmission, §5.1.6.2.1 Driver Requirements, "
        "§5.1.6.2.2 Device Requirements",
        "RFC 1071 (checksum), RFC 791 (IPv4 fragmentation), RFC 8200 §4.5 and §8.1 (IPv6 "
        "fragment header, pseudo header), RFC 9293 (TCP), RFC 768 (UDP), RFC 3168 §6.1.2 "
        "(CWR on the first segment)",
    ),
    actions=_actions(0),
    seed=SeedPolicy.RECOMPUTE,
    big_packets=False,
    engine=Engine.SPEC,
)

LINUX = Profile(
    name="linux",
    description=(
        "Linux 6.18 tap: tun_get_user -> virtio_net_hdr_to_skb (reject = EINVAL on "
        "write) -> bridge -> validate_xmit_skb -> skb_gso_segment (drop) or "
        "skb_checksum_help, on an egress tap without offloads; the bytes the kernel emits."
    ),
    sources=(
        "drivers/net/tun.c tun_get_user: frame shorter than ETH_HLEN, hdr_len below "
        "ETH_HLEN -> EINVAL",
        "drivers/net/tun_vnet.h tun_vnet_hdr_get: hdr_len raised to csum_start+csum_offset+2,"
        " then hdr_len beyond the frame -> EINVAL",
        "include/linux/virtio_net.h __virtio_net_hdr_to_skb: unknown gso_type, gso_size 0, "
        "GSO_BY_FRAGS, csum range, nh_min_len (20, 40 for TCPV6), TSO csum_offset 16, USO "
        "NEEDS_CSUM/csum_offset 6/ECN/UDP_MAX_SEGMENTS (128), 'too small packets are not "
        "really GSO ones'",
        "net/core/dev.c validate_xmit_skb, skb_csum_hwoffload_help, skb_checksum_help "
        "(csum_fold ?: CSUM_MANGLED_0), skb_mac_gso_segment",
        "net/ipv4/af_inet.c inet_gso_segment: IHL < 5 dropped; tot_len, id (+1 per "
        "segment), frag_off (UFO), ip_send_check rewritten per segment",
        "net/ipv4/tcp_offload.c tcp4_gso_segment (pseudo header set up when not "
        "CHECKSUM_PARTIAL), tcp_gso_segment (csum_start == transport header, seed adjusted "
        "by the length delta, FIN/PSH cleared but on the last, CWR cleared but on the first)",
        "net/ipv6/ip6_offload.c ipv6_gso_segment, ipv6_gso_pull_exthdrs (hop-by-hop, "
        "routing, destination options); include/net/ipv6.h ipv6_hopopt_jumbo_remove",
        "net/ipv4/udp_offload.c __udp_gso_segment (csum16 adjust by the UDP length field, "
        "CSUM_MANGLED_0), udp4_ufo_fragment (full UDP checksum, then IP fragments)",
        "net/ipv6/udp_offload.c udp6_ufo_fragment, net/ipv6/output_core.c "
        "ip6_find_1stfragopt (fragment header insertion)",
        "net/bridge/br_forward.c br_dev_queue_push_xmit (no IP checks without br_netfilter)",
        "include/linux/virtio_net.h virtio_net_hdr_from_skb: a CHECKSUM_PARTIAL / GSO skb "
        "read from a tap keeps NEEDS_CSUM and its gso fields on the way to a guest",
    ),
    actions=_actions(1),
    seed=SeedPolicy.ADJUST,
    big_packets=True,
    engine=Engine.LINUX,
    rx_pass_offloads=True,
)

QEMU = Profile(
    name="qemu",
    description=(
        "QEMU software offload (hw/net/net_tx_pkt.c, QEMU 8.0+ TCP segmentation) for a "
        "backend without vnet headers: pseudo headers recomputed, FIN/PSH cleared on every "
        "segment, UFO fragments aligned to 8 bytes keeping DF, no USO, nothing over 64 KiB."
    ),
    sources=(
        "hw/net/net_tx_pkt.c net_tx_pkt_parse_headers (L2 with up to two VLAN tags, IPv4 "
        "with options, IPv6 extension headers), net_tx_pkt_send_custom (GSO packets over "
        "64 KiB dropped, NONE path: net_tx_pkt_do_sw_csum, net_tx_pkt_fix_ip6_payload_len)",
        "hw/net/net_tx_pkt.c net_tx_pkt_tcp_fragment_init/fix/advance: FIN|PSH cleared in "
        "the header copied to every segment, CWR cleared after the first, ip_id + 1, "
        "eth_fix_ip4_checksum",
        "hw/net/net_tx_pkt.c net_tx_pkt_udp_fragment_init/fix: IP_FRAG_ALIGN_SIZE(gso_size),"
        " original flags (DF) kept, no USO (abort() on other gso types)",
        "hw/net/net_tx_pkt.c net_tx_pkt_do_sw_csum: field zeroed, pseudo header from the IP "
        "header, net_checksum_finish_nozero (0 sent as 0xFFFF, TCP included)",
        "hw/net/net_tx_pkt.c net_tx_pkt_build_vheader: QEMU builds the header itself from its "
        "parse (hdr_len = L2 + L3 + TCP data offset), so the driver's hdr_len is not used",
        "QEMU 7.2 fragmented TCP super-packets as IP fragments; the TCP segmentation "
        "modelled here is the 8.0 rework of net_tx_pkt.c",
        "hw/net/virtio-net.c receive_header / virtio_net_receive_rcu: with a vnet-header "
        "peer (tap) the peer's header reaches the guest as it is",
    ),
    actions=_actions(2),
    seed=SeedPolicy.RECOMPUTE,
    big_packets=False,
    engine=Engine.QEMU,
    rx_pass_offloads=True,
)

_FB = FeatureBit
FIRECRACKER_OFFERED = FeatureSet.of(
    _FB.VERSION_1, _FB.CSUM, _FB.GUEST_CSUM, _FB.GUEST_TSO4, _FB.GUEST_TSO6,
    _FB.HOST_TSO4, _FB.HOST_TSO6, _FB.HOST_UFO, _FB.MRG_RXBUF, _FB.EVENT_IDX, _FB.MAC,
    _FB.MTU,
)
"""Net::new ``avail_features`` (MAC and MTU when configured). GUEST_UFO, which
Firecracker offers too, is left out: the emulated device does not coalesce UFO."""

_FIRECRACKER_SOURCES = (
    "firecracker src/vmm/src/devices/virtio/net/device.rs (commit 81b38b9da) Net::new: "
    "avail_features CSUM, GUEST_CSUM, GUEST_TSO4/6, GUEST_UFO, HOST_TSO4/6, HOST_UFO, "
    "VERSION_1, MRG_RXBUF, EVENT_IDX (+ MTU, MAC when configured); no CTRL_VQ, STATUS or "
    "INDIRECT_DESC",
    "device.rs write_to_mmds_or_tap / write_tap: the TX chain, vnet header included, is "
    "written to the tap as it is (only a missing header is refused, commit 8432212e8): "
    "the Linux tap path checks and segments (so the linux actions)",
    "device.rs Net::new tap.set_vnet_hdr_size(12): virtio_net_hdr_v1 both ways; "
    "read_tap: the tap writes the header of a received packet, passed on as it is",
    "device.rs header_set_num_buffers / fb66e22ff3c6 (MRG_RXBUF support): num_buffers "
    "set to the chains used (1 without MRG_RXBUF)",
    "device.rs build_tap_offload_features / 1e5d3dba6a92 'Apply only supported TAP "
    "offloading features' (issue #3905): tap offloads from the acked GUEST_ features",
    "device.rs process_tx: a chain that fails load_descriptor_chain is add_used(head, 0) "
    "and skipped (tx_fails); parse_rx_descriptors likewise for RX (rx_fails); "
    "InvalidAvailIdx is an error",
)

FIRECRACKER = LINUX.derive(
    "firecracker",
    description=(
        "Firecracker virtio-net: fixed features, no header checks of its own (the host "
        "tap's Linux path decides), tap headers passed to the guest with num_buffers set."
    ),
    sources=_FIRECRACKER_SOURCES,
    big_packets=False,
    offered=FIRECRACKER_OFFERED,
    skip_bad_chains=True,
)

FIRECRACKER_LEGACY = FIRECRACKER.derive(
    "firecracker-legacy",
    description=(
        "Firecracker before 2024: no MRG_RXBUF, num_buffers left 0, receive offloads "
        "from the offered (not the accepted) features."
    ),
    sources=(
        *_FIRECRACKER_SOURCES[:3], _FIRECRACKER_SOURCES[-1],
        "firecracker issue #3905 'Guest can't NACK LRO': the tap's offloads were set "
        "from the offered features (fixed by 1e5d3dba6a92); 'Firecracker attempts (and "
        "fails) repeatedly to write a packet which doesn't fit': the device hangs",
        "firecracker PR #4658: 'Prior to this commit Firecracker never set the number of "
        "used heads to 1' (fixed with MRG_RXBUF support, fb66e22ff3c6)",
    ),
    offered=FIRECRACKER_OFFERED - FeatureSet.of(_FB.MRG_RXBUF),
    rx_num_buffers_zero=True,
    rx_offloads_from_offered=True,
    rx_oversize_retry_ns=1_000,
)

PROFILES: dict[str, Profile] = {
    p.name: p for p in (STRICT, LINUX, QEMU, FIRECRACKER, FIRECRACKER_LEGACY)
}


def register_profile(profile: Profile) -> Profile:
    """Make ``profile`` known by name (``NetDeviceConfig(profile=name)``, the CLI);
    ``ValueError`` when another profile has that name."""
    known = PROFILES.get(profile.name)
    if known is not None and known is not profile:
        raise ValueError(f"a device profile named {profile.name!r} exists already")
    PROFILES[profile.name] = profile
    return profile


def get_profile(name: str | Profile) -> Profile:
    """The profile called ``name`` (a :class:`Profile` is returned as it is)."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown device profile {name!r}; known profiles: {', '.join(sorted(PROFILES))}"
        ) from None
