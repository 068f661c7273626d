"""The rules a virtio_net_hdr and its packet are checked against on transmit.

Each :class:`Rule` has a stable name (the key of :attr:`emulator.profiles.Profile.actions`),
a one-line summary, a reference (a spec section, or the Linux/QEMU code whose behaviour
it captures) and whether breaking it breaks a driver requirement of the spec
(``violation``). What a device does when a rule fires is the profile's business.

:class:`OffloadError` is raised for REJECT and DROP; every fired rule that the profile
fixes or allows (when it is a spec violation) becomes a :class:`Note` of the result.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.profiles import Action
from virtio import spec
from virtio.errors import NetHeaderError
from virtio.spec import Section

TX = spec.NET_TX
TX_DRIVER = spec.NET_TX_DRIVER
TX_DEVICE = spec.NET_TX_DEVICE

_VNH = "Linux include/linux/virtio_net.h __virtio_net_hdr_to_skb"
_TUN = "Linux drivers/net/tun.c tun_get_user"
_TUNV = "Linux drivers/net/tun_vnet.h tun_vnet_hdr_get"
_INET = "Linux net/ipv4/af_inet.c inet_gso_segment"
_INET6 = "Linux net/ipv6/ip6_offload.c ipv6_gso_segment"
_TCPO = "Linux net/ipv4/tcp_offload.c tcp_gso_segment"
_UDPO = "Linux net/ipv4/udp_offload.c"
_QEMU = "QEMU hw/net/net_tx_pkt.c"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    summary: str
    reference: Section | str
    violation: bool
    """True when the driver broke a requirement the spec states (a note is recorded even
    when the profile allows the packet)."""

    @property
    def ref(self) -> str:
        return str(self.reference)


def _r(name: str, summary: str, reference: Section | str, violation: bool = False) -> Rule:
    return Rule(name, summary, reference, violation)


_RULES = (
    _r("frame-too-short", "frame shorter than an Ethernet header",
       f"{_TUN}: len < ETH_HLEN -> -EINVAL"),
    _r("gso-type-unknown", "gso_type is not NONE, TCPV4, UDP, TCPV6 or UDP_L4 (with ECN)",
       f"{TX_DRIVER}; {_VNH}: unknown gso_type -> -EINVAL", True),
    _r("ecn-without-gso", "the ECN bit set with gso_type NONE",
       f"{TX_DRIVER} (ECN only with TCP segmentation); {_VNH}: gso_type 0x80 is no known "
       "type -> -EINVAL", True),
    _r("gso-type-unsupported", "a segmentation type the device does not implement",
       f"{_QEMU} net_tx_pkt_do_sw_fragmentation: no USO (abort())"),
    _r("gso-size-zero", "gso_type set with gso_size 0",
       f"{TX_DRIVER} (MUST set gso_size to the MSS); {_VNH}: gso_size 0 -> -EINVAL", True),
    _r("gso-size-by-frags", "gso_size 0xFFFF (GSO_BY_FRAGS)",
       f"{_VNH}: gso_size == GSO_BY_FRAGS -> -EINVAL"),
    _r("csum-outside-frame", "csum_start + csum_offset + 2 beyond the frame",
       f"{TX_DRIVER} (the checksum field lies in the packet); {_VNH}: pskb_may_pull / "
       "skb_partial_csum_set fail -> -EINVAL", True),
    _r("hdr-len-beyond-frame", "hdr_len (raised to the checksum end) beyond the frame",
       f"{TX_DEVICE} (hdr_len is a hint); {_TUNV}: hdr_len > len -> -EINVAL"),
    _r("hdr-len-below-ethernet", "hdr_len between 1 and 13",
       f"{_TUN}: hdr_len && hdr_len < ETH_HLEN -> -EINVAL"),
    _r("csum-start-below-ip-minimum",
       "csum_start below 20 (40 for TCPV6), the minimal IP header, Ethernet not counted",
       f"{_VNH}: skb_transport_offset < nh_min_len -> -EINVAL"),
    _r("transport-header-truncated", "the frame ends inside the minimal TCP/UDP header",
       f"{TX}; {_VNH}: pskb_may_pull(csum_start + thlen) fails -> -EINVAL", True),
    _r("gso-without-needs-csum", "TCP or UFO segmentation without NEEDS_CSUM",
       f"{TX_DRIVER} (gso_type != NONE: MUST set NEEDS_CSUM); Linux "
       "net/ipv4/tcp_offload.c tcp4_gso_segment sets up the pseudo header itself", True),
    _r("uso-without-needs-csum", "UDP_L4 segmentation without NEEDS_CSUM",
       f"{TX_DRIVER}; {_VNH}: SKB_GSO_UDP_L4 without NEEDS_CSUM -> -EINVAL", True),
    _r("csum-offset-tcp", "TCP segmentation with csum_offset other than 16",
       f"{TX} (csum_offset 16 for TCP); {_VNH}: TSO csum_offset != 16 -> -EINVAL", True),
    _r("csum-offset-uso", "UDP_L4 segmentation with csum_offset other than 6",
       f"{TX}; {_VNH}: USO csum_offset != 6 -> -EINVAL", True),
    _r("csum-offset-ufo", "UFO with csum_offset other than 6",
       f"{TX}; Linux net/ipv4/udp_offload.c udp4_ufo_fragment recomputes the UDP checksum "
       "at the real header and never reads csum_offset", True),
    _r("uso-ecn", "UDP_L4 segmentation with the ECN bit",
       f"{TX_DRIVER} (ECN is for TCP); {_VNH}: gso_type != SKB_GSO_UDP_L4 -> -EINVAL"),
    _r("ufo-ecn", "UFO with the ECN bit", f"{TX_DRIVER} (ECN is for TCP); Linux ignores it"),
    _r("uso-too-many-segments", "UDP_L4 payload over 128 segments",
       f"{_VNH}: skb->len - p_off > gso_size * UDP_MAX_SEGMENTS -> -EINVAL"),
    _r("hdr-len-inexact", "GUEST_HDRLEN negotiated and hdr_len is not the header length",
       f"{TX_DRIVER} (with GUEST_HDRLEN, MUST set hdr_len to the headers' length)", True),
    _r("hdr-len-short", "hdr_len below the length of the headers",
       f"{TX_DRIVER} (SHOULD set hdr_len not less than the headers' length)", True),
    _r("gso-single-segment", "a GSO packet whose payload fits in one segment",
       f"{TX}; {_VNH}: 'too small packets are not really GSO ones' (len - p_off <= "
       "gso_size: sent unsegmented, checksum completed)"),
    _r("gso-not-ip", "segmentation of a frame that carries neither IPv4 nor IPv6",
       f"{TX}; Linux net/core/gso.c skb_mac_gso_segment: no offload -> -EPROTONOSUPPORT"),
    _r("ip-header-truncated", "the frame ends inside the IP header",
       f"{_INET}, {_INET6}: pskb_may_pull fails -> -EINVAL"),
    _r("ipv4-ihl-invalid", "IPv4 IHL below 5", f"RFC 791 §3.1; {_INET}: ihl < 5 -> -EINVAL"),
    _r("ip-version-mismatch", "IP version field disagrees with the ethertype",
       f"RFC 791 / RFC 8200; {_INET} never reads the version"),
    _r("ipv4-options", "segmentation of an IPv4 header with options",
       f"{TX} (undefined); Linux copies the options into every segment"),
    _r("ipv4-fragment", "TCP/USO segmentation of an IPv4 fragment (MF or offset set)",
       f"{TX} (undefined); {_INET} copies frag_off into every segment"),
    _r("ip-packet-too-big", "IP packet over 65535 bytes",
       f"{TX} (undefined); {_QEMU} net_tx_pkt_send_custom drops GSO packets over 64 KiB"),
    _r("ip-length-mismatch", "IPv4 total length / IPv6 payload length disagrees with the frame",
       f"{TX} (undefined); {_INET}, {_INET6} rewrite the length of every segment from the "
       "frame and never read it"),
    _r("ipv6-exthdr-truncated", "the frame ends inside an IPv6 extension header",
       f"RFC 8200 §4; {_INET6} ipv6_gso_pull_exthdrs stops -> -EPROTONOSUPPORT"),
    _r("ipv6-hop-by-hop-not-first", "a hop-by-hop header that does not follow the IPv6 header",
       f"RFC 8200 §4.3; {_INET6} ipv6_gso_pull_exthdrs crosses it anywhere"),
    _r("ipv6-fragment-header", "segmentation of a packet with an IPv6 fragment header",
       f"RFC 8200 §4.5; {_INET6}: no GSO handler for NEXTHDR_FRAGMENT -> -EPROTONOSUPPORT"),
    _r("ipv6-jumbo-hop-by-hop",
       "a BIG TCP jumbo hop-by-hop header (RFC 2675) on a packet over 64 KiB",
       f"{_INET6}: ipv6_hopopt_jumbo_remove strips it from every segment"),
    _r("gso-type-mismatch", "gso_type does not match the ethertype or the IP protocol",
       f"{TX_DRIVER}; Linux tcp4_gso_segment/tcp6_gso_segment/udp4_ufo_fragment check "
       "the SKB_GSO type -> -EINVAL, other protocols -> -EPROTONOSUPPORT"),
    _r("csum-start-not-transport", "TCP/USO csum_start is not the transport header offset",
       f"{TX_DRIVER} (the checksum must cover the transport header); {_TCPO}, "
       f"{_UDPO} __udp_gso_segment: skb_checksum_start != skb_transport_header -> -EINVAL",
       True),
    _r("ufo-csum-start-not-transport", "UFO csum_start is not the transport header offset",
       f"{TX_DRIVER}; Linux udp4_ufo_fragment checksums at the real UDP header", True),
    _r("tcp-data-offset-invalid", "TCP data offset below 5",
       f"RFC 9293 §3.1; {_TCPO}: thlen < sizeof(struct tcphdr) -> -EINVAL"),
    _r("tcp-header-truncated", "the frame ends inside the TCP header (options)",
       f"RFC 9293 §3.1; {_TCPO}: pskb_may_pull(thlen) fails -> -EINVAL"),
    _r("gso-payload-within-mss",
       "Linux took the packet for GSO (TCP options counted) but its payload fits in gso_size",
       f"{_TCPO}: skb->len <= mss -> -EINVAL (dropped)"),
    _r("cwr-without-ecn", "TCP segmentation of a CWR segment without the ECN bit",
       f"{TX_DRIVER} (SHOULD NOT without HOST_ECN; with it MUST set the ECN bit)", True),
    _r("udp-length-mismatch", "UDP length field disagrees with the datagram",
       f"RFC 768; {_UDPO} __udp_gso_segment adjusts the seed by the length field"),
    _r("ufo-gso-size-too-small", "UFO with gso_size below 8",
       f"RFC 791 §3.2 (fragments carry multiples of 8 bytes); {_QEMU} "
       "IP_FRAG_ALIGN_SIZE(gso_size) = 0 sends nothing"),
    _r("ufo-gso-size-unaligned", "UFO gso_size not a multiple of 8",
       f"RFC 791 §3.2; {_INET} truncates offset >> 3; {_QEMU} aligns it down"),
    _r("ufo-dont-fragment", "UFO of an IPv4 datagram with DF set",
       f"RFC 791 §3.2; {_INET} overwrites frag_off (DF cleared); QEMU keeps DF"),
    _r("ufo-ipv6", "UFO of an IPv6 datagram",
       f"{_QEMU} net_tx_pkt_udp_fragment_fix handles IPv4 only"),
    _r("ufo-ipv6-fragmentable-exthdr", "UFO of IPv6 with extension headers after the "
       "unfragmentable part", "RFC 8200 §4.5; Linux copies them into every fragment"),
    _r("csum-seed-zero-length", "checksum seed is the pseudo-header sum with length 0",
       f"{TX} (the field holds the TCP/UDP pseudo-header sum); Linux adjusts the seed "
       "and emits wrong checksums, QEMU recomputes", True),
    _r("csum-seed-other", "checksum seed is not a pseudo-header sum of the packet",
       f"{TX_DRIVER} (MUST set the checksum field to the pseudo-header sum)", True),
    # Checked by the device against the negotiated features and its MTU, not by the
    # engine (emulator/net/device.py). A tap or QEMU never looks at what was negotiated.
    _r("tx-gso-not-negotiated", "gso_type whose HOST_ feature was not negotiated",
       f"{TX_DRIVER}; {_TUN} and {_QEMU} do not check negotiated features", True),
    _r("tx-ecn-not-negotiated", "the ECN gso bit without HOST_ECN negotiated",
       f"{TX_DRIVER}; {_VNH} maps it to SKB_GSO_TCP_ECN regardless", True),
    _r("tx-csum-not-negotiated", "NEEDS_CSUM without CSUM negotiated",
       f"{TX_DRIVER}; {_TUN} and {_QEMU} complete the checksum regardless", True),
    _r("tx-segment-exceeds-mtu", "segments longer than the negotiated MTU plus the "
       "Ethernet header", f"{spec.NET_CONFIG_DRIVER}; Linux and QEMU segment at gso_size "
       "whatever the MTU", True),
)

RULES: dict[str, Rule] = {r.name: r for r in _RULES}


def rule(name: str) -> Rule:
    return RULES[name]


@dataclass(frozen=True, slots=True)
class Note:
    """A rule that fired and did not stop the packet: what the device fixed or allowed,
    or what it observed (the seed convention)."""

    rule: str
    reference: str
    action: Action
    detail: str

    def __str__(self) -> str:
        return f"{self.rule} ({self.action.value}): {self.detail} [{self.reference}]"


class OffloadError(NetHeaderError):
    """A header the profile refuses (``stage`` "reject") or a packet it drops during
    offload (``stage`` "drop"). ``rule`` is the stable rule name, ``section`` the spec
    section or real-world reference, ``notes`` what was recorded before it fired."""

    stage: str

    def __init__(
        self,
        message: str,
        *,
        rule: str,
        section: Section | str,
        stage: str,
        notes: tuple[Note, ...] = (),
    ) -> None:
        super().__init__(message, rule=rule, section=section)
        if stage not in ("reject", "drop"):
            raise ValueError(f"stage must be 'reject' or 'drop', not {stage!r}")
        self.stage = stage
        self.notes = notes
