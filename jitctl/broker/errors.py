"""The broker's errors; each is a JitctlError, so the one error mapping gives its exit code."""

from __future__ import annotations

from jitctl.errors import BadInput, Forbidden, JitctlError, NotFound, NotSignedIn, Refused
from jitctl.textsafe import printable


class WrongState(Refused):
    """The request is not in a state where this action applies (or another actor moved it
    first: conditional writes lost the race)."""


class NotPermitted(Forbidden):
    """The actor's role may not take this action (a requester approving, anyone else cancelling)."""


class SelfApproval(NotPermitted):
    """Nobody approves their own request, whatever their groups."""


class AlreadyReviewed(Refused):
    """This approver has already approved this request: approvals count distinct people."""


class RequestNotFound(NotFound):
    """No such request, or one the caller may not see (the same answer: ids do not leak)."""


def no_such_request(request_id: str) -> RequestNotFound:
    return RequestNotFound(
        f"No access request '{printable(request_id)}'.",
        "Check the id: it is the one the broker gave when the request was made.",
    )


class BadRequestInput(BadInput):
    """The rules' input demands are not met (no reason, a ticket that does not match...)."""


class StoreUnavailable(JitctlError):
    """The database did not answer or refused the connection; nothing was written (the
    transaction rolled back). The API answers 503."""


class Unauthenticated(NotSignedIn):
    """No token, or one the broker does not accept (issuer, audience, signature, algorithm,
    expiry): refused before anything is read or stored. The API answers 401."""


class IdentityUnavailable(StoreUnavailable):
    """The identity provider's discovery document or keys could not be read, so no token can
    be checked: the broker cannot serve, as when its database is down (the API answers 503),
    and the caller's token is not at fault."""
