"""Capture what Debian's miniupnpd (the NAT lab's) really sends, into this folder: `sudo python capture.py`.

It builds the NAT lab (tests/support/netlab.py), starts miniupnpd on NAT box 0 and, from the host behind it, sends an
SSDP M-SEARCH and a set of SOAP requests with the standard library only (not our client: the samples must not depend
on the code they test), saving each answer byte for byte. The unit tests of peerloom.net.nat.upnp parse these files.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parents[2] / "src")]

from support.netlab import NatLab  # noqa: E402

AGENT = r'''
import http.client, json, socket, sys, urllib.parse
out = {}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n"
         b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n", ("239.255.255.250", 1900))
ssdp = s.recvfrom(2000)[0]
out["ssdp_response.txt"] = ssdp.decode()
location = [l.split(":", 1)[1].strip() for l in ssdp.decode().split("\r\n") if l.lower().startswith("location:")][0]
url = urllib.parse.urlsplit(location)
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
conn.request("GET", url.path)
out["rootDesc.xml"] = conn.getresponse().read().decode()
CONTROL = "/ctl/IPConn"
ST = "urn:schemas-upnp-org:service:WANIPConnection:1"
def soap(name, action, **args):
    body = ('<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>'
            f'<u:{action} xmlns:u="{ST}">' + "".join(f"<{k}>{v}</{k}>" for k, v in args.items()) +
            f'</u:{action}></s:Body></s:Envelope>\r\n')
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    conn.request("POST", CONTROL, body.encode(), {"Content-Type": 'text/xml; charset="utf-8"',
                                                  "SOAPAction": f'"{ST}#{action}"'})
    response = conn.getresponse()
    out[name] = f"HTTP {response.status}\n" + response.read().decode()
mapping = dict(NewRemoteHost="", NewExternalPort=4001, NewProtocol="TCP", NewInternalPort=4001,
               NewInternalClient="10.18.1.2", NewEnabled=1, NewPortMappingDescription="peerloom")
soap("soap_get_external_ip.xml", "GetExternalIPAddress")
soap("soap_add_port_mapping.xml", "AddPortMapping", **mapping, NewLeaseDuration=120)
soap("soap_fault_conflict.xml", "AddPortMapping", **{**mapping, "NewInternalClient": "10.18.1.3"}, NewLeaseDuration=120)
soap("soap_fault_not_authorized.xml", "AddPortMapping", **{**mapping, "NewExternalPort": 80, "NewInternalPort": 80},
     NewLeaseDuration=120)
delete = dict(NewRemoteHost="", NewExternalPort=4001, NewProtocol="TCP")
soap("soap_delete_port_mapping.xml", "DeletePortMapping", **delete)
soap("soap_delete_port_mapping_again.xml", "DeletePortMapping", **delete)  # miniupnpd answers success again
print(json.dumps(out))
'''


def main() -> None:
    import json

    with NatLab(("cone", "cone")) as lab:
        lab.start_miniupnpd(0)
        samples = json.loads(lab.run(lab.hosts[0], sys.executable, "-c", AGENT).stdout)
    for name, text in samples.items():
        (HERE / name).write_bytes(text.encode())
        print(f"{name}: {len(text)} bytes")


if __name__ == "__main__":
    main()
