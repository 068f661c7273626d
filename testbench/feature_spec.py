"""Feature-set specifications as users write them on the command line and in markers.

A SPEC is a comma list read left to right: ``all``, ``default`` and ``none`` name whole
sets (what they mean depends on the side: see :func:`parse_spec`), a feature name
(``VIRTIO_NET_F_``/``VIRTIO_F_`` prefixes and case optional) or ``+NAME`` adds it, and
``-NAME`` removes it. ``VERSION_1`` is implied (every modern device offers it and every
modern driver must accept it, §6) unless the SPEC removes it with ``-VERSION_1``.

    CSUM,HOST_TSO4,GUEST_TSO4       VERSION_1 + those three
    default,-HOST_ECN,+MRG_RXBUF    the side's default set, edited
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from virtio.constants import FeatureBit
from virtio.features import FeatureSet

__all__ = ["KEYWORDS", "SpecError", "feature_by_name", "parse_spec"]

KEYWORDS = ("all", "default", "none")
_PREFIXES = ("VIRTIO_NET_F_", "VIRTIO_F_")
MAX_TOKENS = 256
"""Bound on the tokens of one SPEC."""


class SpecError(ValueError):
    """A SPEC that cannot be read; the message is one line, with a suggestion when a
    name is close to a known one."""


def feature_by_name(token: str) -> FeatureBit:
    """The feature called ``token`` (prefix and case optional); :class:`SpecError` with
    the closest known name otherwise."""
    name = token.strip().upper()
    for prefix in _PREFIXES:
        name = name.removeprefix(prefix)
    if name in FeatureBit.__members__:
        return FeatureBit[name]
    close = difflib.get_close_matches(name, list(FeatureBit.__members__), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else " (see virtio/constants.py FeatureBit)"
    raise SpecError(f"unknown feature {token.strip()!r}{hint}")


def parse_spec(text: str, named: Mapping[str, FeatureSet]) -> FeatureSet:
    """The set a SPEC describes. ``named`` gives the sets ``all`` and ``default`` stand
    for on this side (``none`` is the empty set)."""
    tokens = [t.strip() for t in text.split(",")]
    if len(tokens) > MAX_TOKENS:
        raise SpecError(f"a feature spec has at most {MAX_TOKENS} items, not {len(tokens)}")
    if not any(tokens):
        raise SpecError("empty feature spec (use 'none' for no features)")
    result = FeatureSet()
    version_removed = False
    for token in tokens:
        if not token:
            continue
        sign, body = (token[0], token[1:].strip()) if token[0] in "+-" else ("+", token)
        word = body.lower()
        if word in KEYWORDS:
            group = FeatureSet() if word == "none" else named.get(word)
            if group is None:
                raise SpecError(f"{word!r} has no meaning here")
        else:
            group = FeatureSet.of(feature_by_name(body))
        if sign == "-":
            result = result - group
            version_removed |= FeatureBit.VERSION_1 in group
        else:
            result = result | group
    if not version_removed:
        result = result.with_(FeatureBit.VERSION_1)
    return result
