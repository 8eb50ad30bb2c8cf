"""Parameter types: click parses each value with the jitctl.parsing function for it, so a bad
value is click's usage error (one line, exit 2) before the command runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from jitctl.errors import JitctlError


class ParsedType(click.ParamType):
    """A value parsed by a jitctl.parsing function; its BadInput becomes click's usage error."""

    def parse(self, value: str, ctx: click.Context | None) -> Any:
        raise NotImplementedError

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value  # already parsed (a default given typed)
        try:
            return self.parse(value, ctx)
        except JitctlError as err:
            self.fail(f"{err.message} {err.hint}".strip(), param, ctx)


class DurationType(ParsedType):
    name = "duration"

    def __init__(self, minimum: timedelta | None = None) -> None:
        self.minimum = minimum

    def parse(self, value: str, ctx: click.Context | None) -> timedelta:
        from jitctl.parsing import parse_duration

        if self.minimum is None:
            return parse_duration(value)
        return parse_duration(value, minimum=self.minimum)


class PortType(ParsedType):
    name = "port"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        return super().convert(str(value), param, ctx)

    def parse(self, value: str, ctx: click.Context | None) -> int:
        from jitctl.parsing import parse_port

        return parse_port(value)


class ProtocolType(ParsedType):
    name = "tcp|udp|any"

    def parse(self, value: str, ctx: click.Context | None) -> str:
        from jitctl.parsing import parse_protocol

        return parse_protocol(value)


def host_with_prefix(raw: str) -> str | None:
    """'203.0.113.7/24' (host bits set): the network it would open, else None."""
    import ipaddress

    if "/" not in raw:
        return None
    try:
        iface = ipaddress.ip_interface(raw.strip())
    except ValueError:
        return None
    if iface.network.prefixlen in (0, iface.max_prefixlen) or iface.ip == iface.network[0]:
        return None
    return str(iface.network)


class SourceType(ParsedType):
    """An IPv4 address or range. Wide-open sources need the command's (eager)
    --allow-any-source. kind 'address': the one address that connects; 'request': an address
    or range to let in, refusing a host address with a prefix; 'range': a policy's range,
    warning about one.
    """

    name = "ipv4"

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def parse(self, value: str, ctx: click.Context | None) -> str:
        from jitctl.errors import BadInput
        from jitctl.parsing import parse_source

        allow_any = bool(ctx is not None and ctx.params.get("allow_any_source"))
        source = parse_source(value, allow_any=allow_any)
        network = host_with_prefix(value)
        if network and self.kind != "range":
            raise BadInput(
                f"'{value}' is a host address with a prefix: it would let in all of {network}.",
                f"Pass {value.split('/')[0]} for this address, or {network} for the range.",
            )
        if network and ctx is not None:
            from jitctl.cli.output import warn

            warn(
                ctx.find_root().obj,
                f"warning: source '{value}' has host bits set; it means {network}.",
            )
        return source.split("/")[0] if self.kind == "address" else source
