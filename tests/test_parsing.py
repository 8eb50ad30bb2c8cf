from datetime import timedelta

import pytest

from jitctl.errors import BadInput
from jitctl.ids import same_id
from jitctl.parsing import (
    format_human_duration,
    format_iso_duration,
    parse_duration,
    parse_port,
    parse_protocol,
    parse_source,
    parse_vm,
)


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("90m", 90),
        ("1h", 60),
        ("1h30m", 90),
        ("PT1H", 60),
        ("pt2h30m", 150),
        ("5m", 5),
        ("24h", 1440),
        ("P1D", 1440),
        ("PT5M", 5),
    ],
)
def test_durations(text, minutes):
    assert parse_duration(text) == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["4m", "25h", "P2D", "", "abc", "1d", "PT", "-1h", "1h-5m"])
def test_bad_durations(text):
    with pytest.raises(BadInput):
        parse_duration(text)


def test_iso_round_trip():
    for minutes in (5, 60, 90, 180, 1440):
        d = timedelta(minutes=minutes)
        assert parse_duration(format_iso_duration(d)) == d
    assert format_iso_duration(timedelta(hours=3)) == "PT3H"
    assert format_iso_duration(timedelta(days=1)) == "P1D"
    assert format_human_duration(timedelta(minutes=90)) == "1h30m"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7/32", "203.0.113.7"),
        ("198.51.100.0/24", "198.51.100.0/24"),
        ("198.51.100.9/24", "198.51.100.0/24"),
    ],
)
def test_sources(value, expected):
    assert parse_source(value) == expected


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("*", "*"),
        ("any", "*"),
        ("ANY", "*"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("10.1.2.3/0", "0.0.0.0/0"),
        ("Internet", "Internet"),
        ("internet", "Internet"),
    ],
)
def test_wide_open_sources_need_explicit_flag(value, sent):
    with pytest.raises(BadInput, match="whole Internet"):
        parse_source(value)
    assert parse_source(value, allow_any=True) == sent  # the tag stays a tag, never widened to *


def test_unspecified_address_is_not_a_source():
    with pytest.raises(BadInput, match="unspecified address"):
        parse_source("0.0.0.0", allow_any=True)


def test_ipv6_refused_with_reason():
    with pytest.raises(BadInput, match="IPv6, which Just-In-Time access does not support"):
        parse_source("2001:db8::1")


@pytest.mark.parametrize("value", ["300.1.1.1", "host.example", "1.2.3.4/40", ""])
def test_garbage_sources(value):
    with pytest.raises(BadInput):
        parse_source(value)


def test_ports_and_protocols():
    assert parse_port("3389") == 3389
    for bad in ("0", "65536", "rdp", "-1"):
        with pytest.raises(BadInput):
            parse_port(bad)
    assert [parse_protocol(p) for p in ("tcp", "UDP", "any", "*")] == ["TCP", "UDP", "*", "*"]
    with pytest.raises(BadInput):
        parse_protocol("icmp")


def test_vm_by_id_or_name():
    vm_id = "/subscriptions/s1/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/vm1"
    ref = parse_vm(vm_id, resource_group=None, subscription_id=None)
    assert (ref.subscription_id, ref.resource_group, ref.name) == ("s1", "RG", "vm1")
    assert same_id(ref.id, vm_id.upper())
    assert parse_vm("vm1", resource_group="rg", subscription_id="s").id.endswith(
        "/rg/providers/Microsoft.Compute/virtualMachines/vm1"
    )
    with pytest.raises(BadInput, match="resource group"):
        parse_vm("vm1", resource_group=None, subscription_id="s")
    with pytest.raises(BadInput, match="not a virtual machine"):
        parse_vm("/subscriptions/s/resourceGroups/rg", resource_group=None, subscription_id=None)


def test_vm_name_fast_path_accepts_only_what_the_full_check_accepts(monkeypatch):
    """Every name of up to 3 characters over letters, digits and the edge characters, and
    64/65-character ones: the regex fast path never lets through what the full rules refuse."""
    import itertools
    import re

    from jitctl import parsing
    from jitctl.errors import BadInput

    def verdict(name):
        try:
            return parsing.check_vm_name(name) == name
        except BadInput:
            return False

    names = ["".join(p) for n in (1, 2, 3) for p in itertools.product("aZ9_-. ~é", repeat=n)] + [
        "a" * 64,
        "a" * 65,
        "a" * 63 + "-",
        "a" * 63 + "_",
    ]
    fast = [verdict(n) for n in names]
    monkeypatch.setattr(parsing, "_VM_PLAIN", re.compile(r"(?!)"))  # the full check only
    full = [verdict(n) for n in names]
    assert fast == full and sum(fast) > 100
