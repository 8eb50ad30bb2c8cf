"""What an active request's requester needs to connect: where (the VM's public address, or
the Azure Firewall's address and the port its DNAT rule maps) and the proof that access is
live, as the JSON the worker keeps on the request and the API hands back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jitctl.errors import JitctlError
from jitctl.gateway import Gateway
from jitctl.model import GrantPort, PolicyVm
from jitctl.services.connect import connect_target
from jitctl.services.verify import VerifyResult


def proof_json(v: VerifyResult, polls: int) -> dict[str, Any]:
    """jitctl's verify verdict, port by port (behind a firewall: its address, the mapped
    port, and whether jitctl read the DNAT rule itself)."""
    ports = []
    for p in v.ports:
        port: dict[str, Any] = {"port": p.port, "effective": p.effective}
        if p.firewall is not None:
            port["firewall"] = {
                "address": p.firewall.address,
                "mapped_port": p.firewall.mapped_port,
                "verified": p.firewall.verified,
            }
        ports.append(port)
    return {
        "effective": v.effective,
        "verified": v.verified,
        "polls": polls,
        "vm": v.vm_name,
        "source": v.source_ip,
        "private_ip": v.private_ip,
        "ports": ports,
        **({"trust": note} if (note := v.trust_note()) else {}),
    }


def connect_json(
    gw: Gateway, pvm: PolicyVm, proof: VerifyResult, granted: Sequence[GrantPort]
) -> list[dict[str, Any]]:
    """Per port granted: the host and port a client connects to, and by which way ("public"
    or "firewall"); a VM without a public address says so (its private address is in the
    proof, for a client on a VPN or peering)."""
    out = []
    for g in granted:
        try:
            host, port, via = connect_target(gw, pvm, proof, g.number, False, g.mapped_port)
        except JitctlError as err:  # no public IP (yet): the private address still serves
            out.append(
                {
                    "port": g.number,
                    "host": None,
                    "connect_port": g.number,
                    "via": None,
                    "note": err.message,
                }
            )
            continue
        out.append({"port": g.number, "host": host, "connect_port": port, "via": via})
    return out
