"""WS-Discovery messages: the Probe we send and the ProbeMatches we read (pure).

Owns the message formats of WS-Discovery 2005/04 as ONVIF uses them (SOAP 1.2
over UDP, WS-Addressing 2004/08), shared by the client (:mod:`.probe`) and the
camera simulator. No sockets here; :mod:`.probe` does the networking.

Why not the ``wsdiscovery`` package (the maintained Python implementation):
its daemon binds ``('', 3702)`` on every interface with the port fixed in a
module constant, so it can neither take the free port that lets parallel test
runs ignore each other's simulated cameras, nor stay on loopback; it parses
with ``xml.dom.minidom`` (DTDs allowed) and expects spec-conformant answers.
What ONVIF discovery needs is one message out and one parser in, written here.
"""

from __future__ import annotations

import re
import uuid
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from camera_discovery import xmlsafe
from camera_discovery.models import MAX_TOKENS, MAX_XADDRS, ProbeMatch
from labwitness.errors import DeviceProtocolError

MULTICAST_GROUP = "239.255.255.250"
DEFAULT_PORT = 3702

NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
NS_DN = "http://www.onvif.org/ver10/network/wsdl"
NS_TDS = "http://www.onvif.org/ver10/device/wsdl"
ACTION_PROBE = NS_WSD + "/Probe"
ACTION_PROBE_MATCHES = NS_WSD + "/ProbeMatches"
TO_DISCOVERY = "urn:schemas-xmlsoap-org:ws:2005:04:discovery"
ANONYMOUS = NS_WSA + "/role/anonymous"

#: The two types an ONVIF camera answers to. They are probed separately: in
#: WS-Discovery a Probe listing several types matches only devices having
#: all of them, and older (Profile S) cameras know only the first one.
PROBE_TYPES = ("dn:NetworkVideoTransmitter", "tds:Device")

#: an answer larger than one UDP datagram is not a ProbeMatches we can use
MAX_DATAGRAM = 65_535

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def new_message_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def build_probe(message_id: str, types: str) -> bytes:
    """A Probe for ``types`` (e.g. ``"dn:NetworkVideoTransmitter"``), as UDP payload."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{NS_SOAP12}" xmlns:a="{NS_WSA}" xmlns:d="{NS_WSD}" '
        f'xmlns:dn="{NS_DN}" xmlns:tds="{NS_TDS}">'
        "<s:Header>"
        f'<a:Action s:mustUnderstand="1">{ACTION_PROBE}</a:Action>'
        f"<a:MessageID>{escape(message_id)}</a:MessageID>"
        f"<a:ReplyTo><a:Address>{ANONYMOUS}</a:Address></a:ReplyTo>"
        f'<a:To s:mustUnderstand="1">{TO_DISCOVERY}</a:To>'
        "</s:Header>"
        f"<s:Body><d:Probe><d:Types>{escape(types)}</d:Types></d:Probe></s:Body>"
        "</s:Envelope>"
    ).encode("utf-8")


def build_probe_matches(
    message_id: str,
    relates_to: str,
    endpoint: str,
    xaddrs: list[str],
    scopes: list[str],
    types: str = "dn:NetworkVideoTransmitter tds:Device",
) -> bytes:
    """A ProbeMatches with one match (what the simulator answers)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{NS_SOAP12}" xmlns:a="{NS_WSA}" xmlns:d="{NS_WSD}" '
        f'xmlns:dn="{NS_DN}" xmlns:tds="{NS_TDS}">'
        "<s:Header>"
        f"<a:MessageID>{escape(message_id)}</a:MessageID>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
        f"<a:To>{ANONYMOUS}</a:To>"
        f"<a:Action>{ACTION_PROBE_MATCHES}</a:Action>"
        "</s:Header>"
        "<s:Body><d:ProbeMatches><d:ProbeMatch>"
        f"<a:EndpointReference><a:Address>{escape(endpoint)}</a:Address></a:EndpointReference>"
        f"<d:Types>{escape(types)}</d:Types>"
        f"<d:Scopes>{escape(' '.join(scopes))}</d:Scopes>"
        f"<d:XAddrs>{escape(' '.join(xaddrs))}</d:XAddrs>"
        "<d:MetadataVersion>1</d:MetadataVersion>"
        "</d:ProbeMatch></d:ProbeMatches></s:Body>"
        "</s:Envelope>"
    ).encode("utf-8")


def parse_probe_matches(data: bytes, source: str) -> tuple[str | None, list[ProbeMatch]]:
    """``(RelatesTo, matches)`` of one UDP answer from ``source`` (``host:port``).

    Raises :class:`DeviceProtocolError` for XML that is unsafe, malformed, or
    not a ProbeMatches. Elements are matched by local name, so WS-Discovery
    1.1 (2009/01) namespaces, or none at all, read the same.
    """
    root = xmlsafe.parse(data, f"WS-Discovery answer from {source}", max_bytes=MAX_DATAGRAM)
    relates_to = xmlsafe.text(root, "Header", "RelatesTo")
    elements = list(xmlsafe.descendants(root, "ProbeMatch"))
    if not elements and xmlsafe.first(root, "ProbeMatches") is None:
        raise DeviceProtocolError(f"不是 ProbeMatches / WS-Discovery answer from {source} is not a ProbeMatches message")
    matches = [m for m in (_match(e, source) for e in elements) if m is not None]
    return relates_to, matches


def _match(el: Element, source: str) -> ProbeMatch | None:
    http = (a for a in (xmlsafe.text(el, "XAddrs") or "").split() if a.lower().startswith(("http://", "https://")))
    xaddrs = tuple(dict.fromkeys(http))[:MAX_XADDRS]
    endpoint = normalise_endpoint(xmlsafe.text(el, "EndpointReference", "Address"))
    if not endpoint:
        # Camera quirk: an empty or missing EndpointReference. The first XAddr
        # is the most stable identity left; without one the match is useless.
        if not xaddrs:
            return None
        endpoint = xaddrs[0]
    return ProbeMatch(
        endpoint=endpoint,
        xaddrs=xaddrs,
        types=tuple(dict.fromkeys((xmlsafe.text(el, "Types") or "").split()))[:MAX_TOKENS],
        scopes=tuple(dict.fromkeys(split_scopes(xmlsafe.text(el, "Scopes") or "")))[:MAX_TOKENS],
        source=source,
    )


def normalise_endpoint(address: str | None) -> str | None:
    """Endpoint references compare case-insensitively when they are UUID URNs."""
    if not address:
        return None
    address = address.strip()
    if address.lower().startswith("urn:uuid:"):
        return address.lower()
    if re.fullmatch(r"[0-9a-fA-F-]{36}", address):
        # Camera quirk: a bare UUID without the urn:uuid: prefix.
        return "urn:uuid:" + address.lower()
    return address


def split_scopes(value: str) -> tuple[str, ...]:
    """Scope URIs from the whitespace-separated list.

    Camera quirk: some firmwares put unencoded spaces in scope values
    (``onvif://www.onvif.org/name/IP Camera``); a token that is not a URI is
    glued back to the scope before it.
    """
    scopes: list[str] = []
    for token in value.split():
        if scopes and not _SCHEME.match(token):
            scopes[-1] += " " + token
        else:
            scopes.append(token)
    return tuple(scopes)


def parse_probe(data: bytes, source: str) -> tuple[str | None, list[str]]:
    """``(MessageID, types)`` of a Probe (for the simulator); raises on anything else."""
    root = xmlsafe.parse(data, f"Probe from {source}", max_bytes=MAX_DATAGRAM)
    probe = xmlsafe.first(root, "Body", "Probe")
    if probe is None:
        raise DeviceProtocolError(f"not a Probe: {source}")
    return xmlsafe.text(root, "Header", "MessageID"), (xmlsafe.text(probe, "Types") or "").split()
