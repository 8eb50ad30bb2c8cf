"""One meaning of "any source" (jitctl.parsing.wide_open), every spelling through every consumer.

Every address: '*', 'Any' (the portal's label for '*'), any /0 CIDR. The Internet: the service
tag, kept as the tag (Azure treats it differently from '*', which also covers the VNet).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitctl.errors import BadInput
from jitctl.model import Nsg, PortRule, SecurityRule
from jitctl.nsgeval import Flow, evaluate, source_within
from jitctl.parsing import canonical_source, is_any_source, parse_source, wide_open
from jitctl.policyfile import PolicyFile, export_port, port_rule
from jitctl.policymerge import same_rule
from tests.support import RG, SUB

PUBLIC, PRIVATE = "203.0.113.7", "10.0.0.9"

# spelling, kind (what wide_open says), what Azure is sent
SPELLINGS = [
    ("*", "*", "*"),
    (" * ", "*", "*"),
    ("any", "*", "*"),
    ("Any", "*", "*"),
    ("ANY", "*", "*"),
    ("0.0.0.0/0", "*", "0.0.0.0/0"),
    ("10.0.0.0/0", "*", "0.0.0.0/0"),
    ("Internet", "Internet", "Internet"),
    ("internet", "Internet", "Internet"),
    ("INTERNET", "Internet", "Internet"),
    (" Internet ", "Internet", "Internet"),
]
NOT_WIDE = ["203.0.113.0/24", "203.0.113.7", "VirtualNetwork", "AzureLoadBalancer", "0.0.0.0/1"]
IDS = [repr(s[0]) for s in SPELLINGS]


def rule(*sources: str) -> PortRule:
    if len(sources) == 1:
        return PortRule(22, "TCP", timedelta(hours=1), sources[0])
    return PortRule(22, "TCP", timedelta(hours=1), None, tuple(sources))


@pytest.mark.parametrize(("spelling", "kind", "sent"), SPELLINGS, ids=IDS)
def test_definition(spelling, kind, sent):
    assert wide_open(spelling) == kind and is_any_source(spelling)
    assert canonical_source(spelling) == kind.lower()


@pytest.mark.parametrize("prefix", NOT_WIDE)
def test_not_wide_open(prefix):
    assert wide_open(prefix) is None and not is_any_source(prefix)


@pytest.mark.parametrize(("spelling", "kind", "sent"), SPELLINGS, ids=IDS)
def test_cli_parsing_refuses_unless_explicit_and_keeps_the_tag(spelling, kind, sent):
    with pytest.raises(BadInput, match="whole Internet"):
        parse_source(spelling)
    assert parse_source(spelling, allow_any=True) == sent


@pytest.mark.parametrize(("spelling", "kind", "sent"), SPELLINGS, ids=IDS)
def test_policy_file_refuses_unless_explicit_and_sends_the_same(spelling, kind, sent):
    target = {"resourceGroup": "rg", "names": ["*"], "ports": [{"number": 22}]}
    port = target["ports"][0]
    port["sources"] = [spelling]
    with pytest.raises(ValueError, match="set allowAnySource: true"):
        PolicyFile.model_validate({"targets": [target]})
    port["allowAnySource"] = True
    model = PolicyFile.model_validate({"targets": [target]})
    built = port_rule(model.targets[0].ports[0], model.defaults)
    assert built.sources == (sent,)


@pytest.mark.parametrize(("spelling", "kind", "sent"), SPELLINGS, ids=IDS)
def test_export_marks_it_explicit(spelling, kind, sent):
    out = export_port(rule(sent, "198.51.100.0/24"))
    assert out["allowAnySource"] is True and out["sources"] == [sent, "198.51.100.0/24"]


@pytest.mark.parametrize(("spelling", "kind", "sent"), SPELLINGS, ids=IDS)
def test_merge_compares_by_meaning(spelling, kind, sent):
    assert same_rule(rule(spelling), rule(sent))
    assert same_rule(rule(spelling), rule(kind))
    other = "Internet" if kind == "*" else "*"
    assert not same_rule(rule(spelling), rule(other))  # '*' and Internet are not one source
    assert not same_rule(rule(spelling), rule("203.0.113.0/24"))


def test_merge_ignores_order_and_single_versus_list():
    assert same_rule(
        rule("198.51.100.0/24", "192.0.2.0/24"), rule("192.0.2.0/24", "198.51.100.0/24")
    )
    assert same_rule(rule("203.0.113.7/32"), rule("203.0.113.7", "203.0.113.7"))
    assert same_rule(rule("virtualnetwork"), rule("VirtualNetwork"))


@pytest.mark.parametrize(("spelling", "kind", "sent"), SPELLINGS, ids=IDS)
def test_request_check_within_the_policy(spelling, kind, sent):
    assert source_within(PUBLIC, [spelling])
    assert source_within("198.51.100.0/24", [spelling])
    assert source_within(PRIVATE, [spelling]) is (kind == "*")  # Internet: not the VNet
    assert source_within(spelling, ["*"])  # '*' allows any request, wide-open ones too
    assert source_within(spelling, [sent])
    assert not source_within(spelling, ["203.0.113.0/24"])
    if kind == "*":
        assert not source_within(spelling, ["Internet"])  # every address is more than Internet


@pytest.mark.parametrize(("spelling", "kind", "sent"), SPELLINGS, ids=IDS)
def test_nsg_evaluation(spelling, kind, sent):
    allow = SecurityRule(
        "Allow-From",
        200,
        "Allow",
        protocol="Tcp",
        source_address_prefix=spelling,
        destination_address_prefix="*",
        destination_port_range="22",
    )
    nsg = Nsg(
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n",
        (allow,),
    )

    def allowed_by_rule(src: str) -> bool:
        result = evaluate(None, nsg, Flow(src, "10.0.0.4", 22, vnet_prefixes=("10.0.0.0/16",)))
        return result.levels[1].rule is not None and result.levels[1].rule.name == "Allow-From"

    assert allowed_by_rule(PUBLIC)
    assert allowed_by_rule(PRIVATE) is (kind == "*")  # the VNet reaches the VM only under '*'


@pytest.mark.parametrize(("spelling", "kind", "sent"), SPELLINGS, ids=IDS)
def test_enable_sends_what_the_user_meant(run, backend, gw, spelling, kind, sent):
    args = ["enable", "vm-win01", "-g", "rg-jit-demo", "--source", spelling]
    r = run(*args)
    assert r.exit_code == 2 and "whole Internet" in r.stderr
    assert not [e for e in backend.log if e.method != "GET"]
    assert run(*args, "--allow-any-source").exit_code == 0
    (policy,) = gw.list_policies(SUB, RG)
    assert policy.vms[0].ports[0].sources == (sent,)  # as stored in the emulated Azure
