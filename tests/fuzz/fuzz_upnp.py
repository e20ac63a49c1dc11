"""atheris fuzz target for the UPnP-IGD parsers: SSDP search answers, device descriptions and SOAP answers.

Run: `python tests/fuzz/fuzz_upnp.py [corpus dir] [-atheris_runs=N]`. The first input byte picks the parser. Only
UpnpError may escape; a parsed description's control URL is an http URL on the description's host.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import harness

from peerloom.net.nat.upnp import UpnpError, external_ip, parse_description, parse_soap_response, parse_ssdp_response

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "upnp"
LOCATION = "http://10.18.1.1:38161/rootDesc.xml"


def _ssdp(data: bytes) -> None:
    answer = parse_ssdp_response(data)
    assert urlsplit(answer.location).scheme == "http"


def _description(data: bytes) -> None:
    gateway = parse_description(data, LOCATION)
    assert urlsplit(gateway.control_url).hostname == "10.18.1.1"


def _soap(data: bytes) -> None:
    for action in ("GetExternalIPAddress", "AddPortMapping"):
        answer = parse_soap_response(data, action)
        if isinstance(answer, dict):
            external_ip(answer)


def seeds() -> list[bytes]:
    soap = [path.read_bytes().split(b"\n", 1)[1] for path in sorted(SAMPLES.glob("soap_*.xml"))]
    return ([b"\x00" + (SAMPLES / "ssdp_response.txt").read_bytes(), b"\x01" + (SAMPLES / "rootDesc.xml").read_bytes()]
            + [b"\x02" + body for body in soap])


TestOneInput = harness.Pick(_ssdp, _description, _soap, allowed=UpnpError)

if __name__ == "__main__":
    harness.main(TestOneInput)
