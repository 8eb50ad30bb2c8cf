"""NSG evaluation with real rule shapes (JIT-REFERENCE sections 2 and 3)."""

from jitctl.model import Nsg, SecurityRule
from jitctl.nsgeval import Flow, evaluate, is_jit_rule

VM_IP = "10.0.0.4"
NEW_DENY = "MicrosoftDefenderForCloud-JITRule_-1234567_0123456789abcdef0123456789abcdef"
NEW_ALLOW = "MicrosoftDefenderForCloud-JITRule-98765-fedcba9876543210fedcba9876543210"
OLD_DENY = "SecurityCenter-JITRule_1234567_0123456789ABCDEF0123456789ABCDEF"
OLD_ALLOW = "SecurityCenter-JITRule--55-0123456789abcdef0123456789abcdef"


def jit_deny(name=NEW_DENY, ports=("22", "3389"), priority=4096):
    return SecurityRule(
        name,
        priority,
        "Deny",
        protocol="*",
        source_address_prefix="*",
        destination_address_prefix=VM_IP,
        destination_port_ranges=tuple(ports),
    )


def jit_allow(source, name=NEW_ALLOW, port="3389", priority=100):
    return SecurityRule(
        name,
        priority,
        "Allow",
        protocol="*",
        source_address_prefix=source,
        destination_address_prefix=VM_IP,
        destination_port_range=port,
    )


def nsg(*rules, name="nsg1"):
    return Nsg(
        f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/{name}",
        rules,
    )


def flow(src="203.0.113.7", port=3389, **kw):
    return Flow(src, VM_IP, port, "Tcp", vnet_prefixes=("10.0.0.0/16",), **kw)


def test_names_of_both_generations_are_jit():
    for name in (NEW_DENY, NEW_ALLOW, OLD_DENY, OLD_ALLOW):
        assert is_jit_rule(SecurityRule(name, 100, "Allow"))
    assert not is_jit_rule(SecurityRule("Allow-RDP", 100, "Allow"))
    assert is_jit_rule(
        SecurityRule(
            "x",
            100,
            "Allow",
            description="ASC JIT Network Access rule for policy 'default' of VM 'a'.",
        )
    )


def test_jit_allow_precedes_jit_deny():
    ev = evaluate(None, nsg(jit_deny(), jit_allow("203.0.113.7")), flow())
    assert ev.allowed and ev.by_jit and not ev.bypassed
    nic = ev.levels[1]
    assert nic.rule.name == NEW_ALLOW and nic.rule.priority == 100
    assert nic.preempted_jit_deny.name == NEW_DENY and nic.preempted_jit_deny.priority == 4096


def test_other_source_hits_multiport_deny():
    ev = evaluate(None, nsg(jit_deny(), jit_allow("203.0.113.7")), flow("198.51.100.1"))
    assert not ev.allowed
    assert ev.levels[1].rule.name == NEW_DENY
    ev22 = evaluate(None, nsg(jit_deny(), jit_allow("203.0.113.7")), flow(port=22))
    assert not ev22.allowed and ev22.levels[1].rule.name == NEW_DENY


def test_cidr_grant_matches_inside_only():
    rules = nsg(jit_deny(OLD_DENY), jit_allow("203.0.113.0/24", OLD_ALLOW))
    assert evaluate(None, rules, flow("203.0.113.200")).allowed
    assert not evaluate(None, rules, flow("203.0.114.1")).allowed


def test_default_deny_all_without_custom_rules():
    ev = evaluate(None, nsg(), flow())
    assert not ev.allowed and ev.levels[1].rule.name == "DenyAllInBound"


def test_vnet_source_allowed_by_default_rule():
    ev = evaluate(None, nsg(), flow("10.0.5.9"))
    assert ev.allowed and ev.levels[1].rule.name == "AllowVnetInBound"
    assert ev.bypassed  # allowed, but not by JIT


def test_load_balancer_probe_tag():
    assert (
        evaluate(None, nsg(), flow("168.63.129.16")).levels[1].rule.name
        == "AllowAzureLoadBalancerInBound"
    )


def test_subnet_first_then_nic_both_must_allow():
    subnet = nsg(jit_deny(), jit_allow("203.0.113.7"), name="subnet-nsg")
    nic_blocks = nsg(
        SecurityRule(
            "Deny-RDP",
            500,
            "Deny",
            source_address_prefix="Internet",
            destination_address_prefix="*",
            destination_port_range="3389",
        ),
        name="nic-nsg",
    )
    ev = evaluate(subnet, nic_blocks, flow())
    assert not ev.allowed
    assert [v.level for v in ev.levels] == ["subnet", "nic"]
    assert (
        ev.levels[0].allowed and not ev.levels[1].allowed and ev.levels[1].rule.name == "Deny-RDP"
    )


def test_broad_allow_above_jit_deny_bypasses_jit():
    legacy = nsg(
        SecurityRule(
            "Allow-RDP-Any",
            1001,
            "Allow",
            protocol="Tcp",
            source_address_prefix="*",
            destination_address_prefix="*",
            destination_port_range="3389",
        ),
        jit_deny(priority=4096),
    )
    ev = evaluate(None, legacy, flow("198.51.100.50"))
    assert ev.allowed and ev.bypassed and not ev.by_jit
    assert ev.levels[1].preempted_jit_deny.name == NEW_DENY
    assert any("JIT is bypassed for port 3389" in w for w in ev.warnings)


def test_jit_on_one_level_is_enough():
    subnet_open = nsg(
        SecurityRule(
            "Allow-RDP",
            200,
            "Allow",
            source_address_prefix="Internet",
            destination_address_prefix="*",
            destination_port_range="3389",
        ),
        name="s",
    )
    nic = nsg(jit_deny(), jit_allow("203.0.113.7"), name="n")
    ev = evaluate(subnet_open, nic, flow())
    assert ev.allowed and ev.by_jit and not ev.bypassed


def test_no_nsg_means_unprotected():
    ev = evaluate(None, None, flow())
    assert ev.allowed and not ev.protected and not ev.bypassed
    assert any("nothing protects" in w for w in ev.warnings)


def test_port_ranges_lists_and_protocols():
    rules = nsg(
        SecurityRule(
            "Allow-Range",
            300,
            "Allow",
            protocol="Udp",
            source_address_prefix="*",
            destination_address_prefix="*",
            destination_port_ranges=("3000-4000",),
        ),
        SecurityRule(
            "Allow-Tcp-List",
            310,
            "Allow",
            protocol="Tcp",
            source_address_prefixes=("198.51.100.0/24", "203.0.113.0/24"),
            destination_address_prefixes=("10.0.0.0/24",),
            destination_port_ranges=("22", "3380-3390"),
        ),
    )
    ev = evaluate(None, rules, flow())
    assert (
        ev.allowed and ev.levels[1].rule.name == "Allow-Tcp-List"
    )  # the Udp rule does not match Tcp
    assert not evaluate(None, rules, flow(port=4000)).allowed


def test_internet_tag_excludes_private_sources():
    rules = nsg(
        SecurityRule(
            "Deny-Internet",
            100,
            "Deny",
            source_address_prefix="Internet",
            destination_address_prefix="*",
            destination_port_range="*",
        )
    )
    assert not evaluate(None, rules, flow("203.0.113.7")).allowed
    assert evaluate(None, rules, flow("10.0.9.9")).allowed  # falls through to AllowVnetInBound


def test_unknown_service_tag_is_noted_not_matched():
    rules = nsg(
        SecurityRule(
            "Allow-Storage",
            100,
            "Allow",
            source_address_prefix="Storage.WestEurope",
            destination_address_prefix="*",
            destination_port_range="*",
        )
    )
    ev = evaluate(None, rules, flow())
    assert not ev.allowed
    assert any("Storage.WestEurope" in w for w in ev.warnings)


def test_application_security_groups():
    asg = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/web"
    rules = nsg(
        SecurityRule(
            "Allow-To-Asg",
            100,
            "Allow",
            source_address_prefix="*",
            destination_asgs=(asg,),
            destination_port_range="3389",
        )
    )
    assert evaluate(None, rules, flow(destination_asgs=(asg.upper(),))).allowed
    assert not evaluate(None, rules, flow()).allowed


def test_outbound_and_source_port_rules_do_not_decide():
    rules = nsg(
        SecurityRule(
            "Out",
            100,
            "Allow",
            direction="Outbound",
            source_address_prefix="*",
            destination_address_prefix="*",
            destination_port_range="*",
        ),
        SecurityRule(
            "SrcPort",
            110,
            "Allow",
            source_address_prefix="*",
            source_port_range="1024",
            destination_address_prefix="*",
            destination_port_range="3389",
        ),
    )
    ev = evaluate(None, rules, flow())
    assert not ev.allowed and ev.levels[1].rule.name == "DenyAllInBound"
    assert any("source ports" in w for w in ev.warnings)


def test_source_within_allowed_prefixes():
    from jitctl.nsgeval import source_within

    assert source_within("203.0.113.7", ["*"])
    assert source_within("198.51.100.0/25", ["10.0.0.0/8", "198.51.100.0/24"])
    assert not source_within("198.51.99.0/24", ["198.51.100.0/24"])
    assert source_within("203.0.113.7", ["Internet"]) and not source_within(
        "10.1.2.3", ["Internet"]
    )
    assert not source_within("not-an-ip", ["10.0.0.0/8"])
    assert not source_within("10.0.0.1", ["VirtualNetwork"])  # a tag it cannot resolve: refused


def test_within_each_source_range_one_address_decides_for_all():
    """source_ranges cuts where any rule's source, a tag or the Internet changes its answer:
    the first, the last and addresses between of each range get the same verdict, rule by rule
    (audit evaluates one address a range and names the whole range)."""
    import ipaddress
    import itertools
    import random

    from jitctl.nsgeval import source_ranges

    def allow(name, priority, *sources, access="Allow"):
        return SecurityRule(
            name,
            priority,
            access,
            protocol="Tcp",
            source_address_prefixes=sources,
            destination_address_prefix="*",
            destination_port_range="3389",
        )

    subnet = nsg(
        allow("Deny-Doc", 100, "192.0.2.0/25", "198.51.100.7", access="Deny"),
        allow("Allow-Internet", 200, "Internet"),
        allow("Allow-LB", 210, "AzureLoadBalancer"),
        name="subnet",
    )
    nic = nsg(
        allow("Allow-VNet", 100, "VirtualNetwork", "172.16.0.0/12"),
        allow("Allow-Any", 300, "0.0.0.0/0"),
        allow("Allow-Tag", 310, "AzureCloud"),
        jit_deny(),
        name="nic",
    )
    ranges = source_ranges((subnet, nic), flow())
    assert ranges[0][0] == 0 and ranges[-1][1] == 2**32 - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))
    assert (int(ipaddress.ip_address("198.51.100.7")),) * 2 in ranges
    assert (int(ipaddress.ip_address("168.63.129.16")),) * 2 in ranges

    def verdict(address):
        ev = evaluate(subnet, nic, flow(str(ipaddress.IPv4Address(address))))
        return ev.allowed, [v.rule.name if v.rule else None for v in ev.levels]

    rng = random.Random(7)
    for first, last in ranges:
        inside = {first, last, rng.randint(first, last), rng.randint(first, last)}
        assert len({str(verdict(a)) for a in inside}) == 1, (first, last)
    assert len({str(verdict(first)) for first, _ in ranges}) >= 5  # the cut is not trivial
