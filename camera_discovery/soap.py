"""SOAP over HTTP to one ONVIF device: build, sign, send, bound, classify.

Owns :class:`SoapSession`, the only code here that talks HTTP to a camera:

* Requests are built by zeep from the ONVIF WSDLs that onvif-zeep ships
  (one zeep client per WSDL, loaded once per process; :func:`preload`).
  onvif-zeep's own ``ONVIFCamera`` is not used: it fixes the device path to
  ``/onvif/device_service``, turns on ``xml_huge_tree`` (lifting lxml's
  limits), wraps every failure as "Unknown error", and calls
  ``logging.basicConfig`` when imported — so not even its module is imported.
* Signed with WS-UsernameToken PasswordDigest whose ``Created`` is the
  *camera's* time (host clock + measured offset): cameras refuse tokens
  dated outside a few seconds of their own clock.
* Answers are read with a size bound and a time bound, then parsed by
  :mod:`.xmlsafe` (no DTD, local names), never by zeep: real cameras answer
  in shapes zeep's schema-driven parser rejects.
* Every failure becomes a :class:`~labwitness.errors.DeviceError` subclass
  with a message naming the device and the operation.
"""

from __future__ import annotations

import email.utils
import importlib.util
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import requests
from lxml import etree

from camera_discovery import xaddr_policy, xmlsafe
from labwitness.clock import Clock, SystemClock
from labwitness.errors import (
    DeviceAuthError,
    DeviceProtocolError,
    DeviceUnreachableError,
    SoapFaultError,
)

NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS_DEVICE = "http://www.onvif.org/ver10/device/wsdl"
NS_MEDIA = "http://www.onvif.org/ver10/media/wsdl"

#: service name → (WSDL file in onvif-zeep's wsdl/ directory, binding QName)
SERVICES = {
    "device": ("devicemgmt.wsdl", f"{{{NS_DEVICE}}}DeviceBinding"),
    "media": ("media.wsdl", f"{{{NS_MEDIA}}}MediaBinding"),
}

# Fault codes (local names) and reason texts that mean "credentials", as
# cameras say it: ter:NotAuthorized (the ONVIF spec), wsse:FailedAuthentication
# (WS-Security), or only a reason text such as "Sender not Authorized".
_AUTH_CODES = {"notauthorized", "failedauthentication", "invalidsecuritytoken", "invalidsecurity", "failedcheck"}
_AUTH_REASON = re.compile(r"not\s*authori[sz]ed|unauthori[sz]ed|authori[sz]ation|authenticat|password|credential", re.IGNORECASE)


def wsdl_dir() -> Path:
    """onvif-zeep's WSDL directory, found without importing ``onvif``."""
    spec = importlib.util.find_spec("onvif")
    if spec is None or spec.origin is None:
        raise RuntimeError("onvif-zeep is not installed (pip install onvif-zeep)")
    return Path(spec.origin).resolve().parent.parent / "wsdl"


class _Wsdl:
    """A zeep client for one WSDL, shared by all threads (message building only)."""

    _cache: dict[str, _Wsdl] = {}
    _cache_lock = threading.Lock()

    def __init__(self, service: str) -> None:
        from zeep import Client, Settings

        filename, binding = SERVICES[service]
        # strict=False: tolerate our own schema's oddities when building;
        # forbid_*: the WSDLs are local files, nothing may pull in more.
        settings = Settings(strict=False, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        self.client = Client(str(wsdl_dir() / filename), settings=settings)
        self.proxy = self.client.create_service(binding, "http://unused.invalid/")
        self.binding = self.client.wsdl.bindings[binding]
        self.lock = threading.Lock()

    @classmethod
    def get(cls, service: str) -> _Wsdl:
        with cls._cache_lock:
            if service not in cls._cache:
                cls._cache[service] = cls(service)
            return cls._cache[service]

    def build(self, operation: str, params: dict[str, Any]) -> tuple[Any, str]:
        """``(lxml envelope, SOAP action)`` for one call."""
        with self.lock:
            envelope = self.client.create_message(self.proxy, operation, **params)
            action = self.binding.get(operation).soapaction or ""
        return envelope, action


def preload() -> None:
    """Load the WSDLs now (about a second), e.g. while a probe is waiting."""
    for service in SERVICES:
        _Wsdl.get(service)


@dataclass(frozen=True)
class Exchange:
    """One answered call: the Body's payload element and when it happened."""

    payload: Element
    #: host wall-clock time when the request was sent
    sent: datetime
    #: seconds from send to the complete answer
    rtt_s: float


class SoapSession:
    """Calls to one device, one thread at a time; holds the clock offset used to sign."""

    def __init__(
        self,
        username: str | None,
        password: str | None,
        timeout: float,
        *,
        clock: Clock | None = None,
        max_bytes: int = xmlsafe.MAX_XML_BYTES,
        allowed_hosts: frozenset[str] | None = None,
    ) -> None:
        self.username = username
        #: hosts this session may POST to (camera_discovery.xaddr_policy); None: any
        self.allowed_hosts = allowed_hosts
        self.password = password
        self.timeout = timeout
        self.clock = clock or SystemClock()
        self.max_bytes = max_bytes
        #: camera clock minus host clock; set once measured, used in ``Created``
        self.clock_offset_s = 0.0
        #: camera time from the HTTP ``Date`` header of the last answer, with host time then
        self.last_http_date: tuple[datetime, datetime] | None = None
        self._http = requests.Session()
        # Cameras are on the LAN: never route them through a proxy from the
        # environment, never send netrc credentials.
        self._http.trust_env = False

    @property
    def has_credentials(self) -> bool:
        return self.username is not None and self.password is not None

    def may_contact(self, xaddr: str) -> bool:
        return self.allowed_hosts is None or xaddr_policy.may_contact(xaddr, self.allowed_hosts)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SoapSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, xaddr: str, service: str, operation: str, *, auth: bool, **params: Any) -> Exchange:
        """Call ``operation``; signed when ``auth`` (and credentials exist)."""
        what = f"{operation} @ {xaddr}"
        if not self.may_contact(xaddr):
            # the last line of defence: an address a device handed us on another host
            # gets neither the request nor the credentials' digest
            raise DeviceProtocolError(f"服务地址不在应答设备的主机上，未连接 / not contacted: {xaddr} is not on the "
                                      "host that answered the scan, nor one the admin asked for")
        envelope, action = _Wsdl.get(service).build(operation, params)
        if auth and self.has_credentials:
            self._sign(envelope)
        body = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        headers = {
            "Content-Type": f'application/soap+xml; charset=utf-8; action="{action}"',
            # a compressed answer could expand past the size bound before we count it
            "Accept-Encoding": "identity",
        }
        sent = self.clock.now()
        start = self.clock.monotonic()
        try:
            with self._http.post(
                xaddr, data=body, headers=headers, timeout=(self.timeout, self.timeout),
                stream=True, allow_redirects=False,
            ) as response:
                content = self._read(response, what, start)
                status = response.status_code
                content_type = response.headers.get("Content-Type", "").lower()
                challenge = response.headers.get("WWW-Authenticate", "")
                self._note_date(response.headers.get("Date"), sent)
        except requests.Timeout:
            raise DeviceUnreachableError(f"设备无应答 / no answer within {self.timeout:g} s: {what}") from None
        except requests.ConnectionError as e:
            if "timed out" in str(e).lower():
                raise DeviceUnreachableError(f"设备无应答 / no answer within {self.timeout:g} s: {what}") from None
            raise DeviceUnreachableError(f"无法连接设备 / cannot connect: {what} ({_reason(e)})") from None
        except requests.RequestException as e:
            raise DeviceProtocolError(f"HTTP 应答无效 / broken HTTP answer: {what} ({_reason(e)})") from None
        rtt = self.clock.monotonic() - start

        if status == 401:
            # Camera quirk: some firmwares (Hikvision among them) answer 401
            # with an HTTP Digest challenge instead of a SOAP NotAuthorized fault.
            scheme = challenge.split(" ", 1)[0] or "none"
            raise DeviceAuthError(f"设备拒绝认证 / HTTP 401 (challenge: {scheme}): {what}")
        if "text/html" in content_type:
            raise DeviceProtocolError(
                f"返回了网页而不是 SOAP / answered with an HTML page (HTTP {status}), not SOAP: {what}"
            )
        root = xmlsafe.parse(content, what, self.max_bytes)
        payload = _payload(root, what)
        if xmlsafe.local(payload.tag) == "fault":
            raise _fault_error(payload, what, status)
        if status != 200:
            raise DeviceProtocolError(f"HTTP {status} 且无 SOAP 错误 / HTTP {status} without a SOAP fault: {what}")
        return Exchange(payload=payload, sent=sent, rtt_s=rtt)

    def _sign(self, envelope: Any) -> None:
        from zeep.wsse.username import UsernameToken

        # Camera quirk (well known): the token's Created must be within a few
        # seconds of the *camera's* clock, which is often hours off; date it
        # by the offset measured with GetSystemDateAndTime. zeep drops the
        # sub-second part, so round instead of truncating. "Z", not "+00:00":
        # some firmwares reject the latter.
        created = (self.clock.now() + timedelta(seconds=self.clock_offset_s + 0.5)).astimezone(timezone.utc)
        token = UsernameToken(self.username, self.password, use_digest=True, created=created, zulu_timestamp=True)
        token.apply(envelope, {})

    def _read(self, response: requests.Response, what: str, start: float) -> bytes:
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            raise DeviceProtocolError(f"应答过大 / answer of {length} bytes exceeds {self.max_bytes}: {what}")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > self.max_bytes:
                raise DeviceProtocolError(f"应答过大 / answer exceeds {self.max_bytes} bytes: {what}")
            # per-read timeouts do not stop a device that drips bytes slowly
            if self.clock.monotonic() - start > 2 * self.timeout:
                raise DeviceUnreachableError(f"应答未在时限内完成 / answer not complete within {2 * self.timeout:g} s: {what}")
            chunks.append(chunk)
        return b"".join(chunks)

    def _note_date(self, value: str | None, sent: datetime) -> None:
        if not value:
            return
        try:
            camera = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return
        if camera.tzinfo is None:
            camera = camera.replace(tzinfo=timezone.utc)
        self.last_http_date = (camera, sent)


def _payload(root: Element, what: str) -> Element:
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    # SOAP 1.1 answers to 1.2 requests are common and harmless; an undeclared
    # prefix (see xmlsafe) is a sloppy camera, not a foreign document.
    if xmlsafe.local(root.tag) != "envelope" or not (
        namespace in (NS_SOAP12, NS_SOAP11) or namespace.startswith("urn:labwitness:undeclared:")
    ):
        raise DeviceProtocolError(
            f"不是 SOAP 信封 / not a SOAP envelope (root element {root.tag!r}): {what}"
        )
    body = xmlsafe.first(root, "Body")
    payload = next((c for c in body if isinstance(c.tag, str)), None) if body is not None else None
    if payload is None:
        raise DeviceProtocolError(f"SOAP 信封为空 / SOAP envelope without a Body payload: {what}")
    return payload


def _fault_error(fault: Element, what: str, status: int) -> Exception:
    codes: list[str] = []
    for el in fault.iter():
        name = xmlsafe.local(el.tag)
        if name in ("value", "faultcode") and el.text and el.text.strip():
            codes.append(el.text.strip().rsplit(":", 1)[-1])
    reason = xmlsafe.text(fault, "Reason", "Text") or xmlsafe.text(fault, "faultstring") or ""
    detail = f"{'/'.join(codes) or 'no code'}{': ' + reason if reason else ''}"
    if any(c.lower() in _AUTH_CODES for c in codes) or _AUTH_REASON.search(reason):
        return DeviceAuthError(f"设备拒绝认证 / not authorized ({detail}): {what}")
    return SoapFaultError(f"设备返回 SOAP 错误 / SOAP fault ({detail}, HTTP {status}): {what}", tuple(codes))


def _reason(e: Exception) -> str:
    text = str(e)
    # urllib3 nests the useful part ("[Errno 111] Connection refused") deep inside
    match = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    return match.group(0).strip() if match else text[:200]
