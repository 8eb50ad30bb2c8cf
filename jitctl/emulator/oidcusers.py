"""The emulator identity provider's test users: who they are and which groups and app roles
their tokens carry."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["USERS", "TestUser"]


@dataclass(frozen=True)
class TestUser:
    upn: str
    name: str
    oid: str
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()  # app roles, in the token's `roles` claim


# Groups are named as the rules name them; real Entra tokens carry group object ids unless the
# app registration emits names (EMULATOR.md says so).
USERS: dict[str, TestUser] = {
    u.upn: u
    for u in (
        TestUser(
            "alice@contoso.com",
            "Alice Engineer",
            "a11ce000-0000-4000-8000-0000000000a1",
            ("engineers",),
        ),
        TestUser(
            "bob@contoso.com", "Bob Lead", "b0b00000-0000-4000-8000-0000000000b0", ("ops-leads",)
        ),
        TestUser(
            "carol@contoso.com",
            "Carol Admin",
            "ca201000-0000-4000-8000-0000000000c0",
            ("broker-admins",),
            ("admin",),
        ),
        TestUser(
            "dave@contoso.com",
            "Dave Oncall",
            "da7e0000-0000-4000-8000-0000000000d0",
            ("engineers", "oncall"),
        ),
        TestUser(
            "erin@contoso.com",
            "Erin SRE",
            "e2140000-0000-4000-8000-0000000000e0",
            ("engineers", "sre"),
        ),
        TestUser(
            "mallory@contoso.com",
            "Mallory Contractor",
            "3a110000-0000-4000-8000-000000000030",
            ("engineers", "contractors"),
        ),
    )
}
