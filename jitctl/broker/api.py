"""The broker's JSON API under /api/v1/ (Starlette): create, list, show and decide requests,
explain the rules, read and verify the audit log.

Every endpoint takes a bearer token, checked by the verifier before anything is read or
stored. The API writes only the store: approving moves a request to `approved`, and the
worker sends the initiate. Errors are mapped in one place (views.error_answer) to
`{"error": {"code", "message", "hint"}}`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from jitctl.broker import bodies
from jitctl.broker.errors import NotPermitted, no_such_request
from jitctl.broker.http import Call, Handler, Verifier, endpoint, probe
from jitctl.broker.lifecycle import Action, State, check, held_roles
from jitctl.broker.paging import Page, scope_page
from jitctl.broker.records import RequestRecord
from jitctl.broker.rules import Ask, Outcome, Principal, RuleSet, rules_document
from jitctl.broker.store import Store
from jitctl.broker.views import (
    Access,
    decision_json,
    request_json,
    utc,
)
from jitctl.errors import BadInput
from jitctl.parsing import MAX_DURATION
from jitctl.textsafe import printable

log = logging.getLogger("jitctl.broker.api")


class WebPages(Protocol):
    """Pages served beside the API (jitctl.broker.pages.PagesConfig): their routes and the
    middleware they need (the session), on the API's own handlers."""

    def attach(self, api: Api, verifier: Verifier) -> tuple[list[Any], list[Any]]: ...


@dataclass(frozen=True)
class Settings:
    access: Access = field(default_factory=Access)
    subscription: str | None = None  # for VMs named without one
    # The VM's tags (rules may match on them) by resource id; raises NotFound for no such VM.
    # None: no lookup, rules see no tags.
    vm_tags: Callable[[str], tuple[tuple[str, str], ...]] | None = None
    # Raises what Azure would refuse of an initiate (azureside.JitCheck): checked when a
    # request is made, before anyone is asked to approve it. None: not checked.
    jit_check: Callable[[str, tuple[int, ...], str, timedelta], None] | None = None
    list_limit: int = 100


def create_app(
    store: Store,
    rules_source: Callable[[], RuleSet],
    verifier: Verifier,
    settings: Settings,
    pages: WebPages | None = None,
) -> Starlette:
    """The API; with `pages` (jitctl.broker.pages.PagesConfig) the web pages beside it."""
    api = Api(store, rules_source, settings)
    routes: list[Any] = [
        Route("/healthz", probe(store), methods=["GET"]),
        *(
            Route(f"/api/v1{path}", endpoint(verifier, handler, status), methods=[method])
            for method, path, handler, status in api.table()
        ),
    ]
    if pages is None:
        return Starlette(routes=routes)
    more, middleware = pages.attach(api, verifier)
    return Starlette(routes=[*routes, *more], middleware=middleware)


class Api:
    def __init__(
        self, store: Store, rules_source: Callable[[], RuleSet], settings: Settings
    ) -> None:
        self.store = store
        self.rules = rules_source
        self.settings = settings
        self.access = settings.access

    def table(self) -> list[tuple[str, str, Handler, int]]:
        return [
            ("GET", "/healthz", self.healthz, 200),
            ("POST", "/requests", self.create, 201),
            ("GET", "/requests", self.list, 200),
            ("GET", "/requests/{id}", self.show, 200),
            ("POST", "/requests/{id}/approve", self.approve, 200),
            ("POST", "/requests/{id}/deny", self.deny, 200),
            ("POST", "/requests/{id}/cancel", self.decide(Action.CANCEL), 200),
            ("POST", "/requests/{id}/revoke", self.decide(Action.REVOKE), 200),
            ("POST", "/requests/{id}/extend", self.extend, 200),
            ("POST", "/explain", self.explain, 200),
            ("GET", "/rules", self.rules_in_force, 200),
            ("GET", "/log", self.log, 200),
            ("GET", "/log/verify", self.verify_log, 200),
        ]

    # --- requests ---------------------------------------------------------------------------

    def healthz(self, call: Call) -> dict[str, Any]:
        self.store.ping()
        return {"status": "ok", "you": call.who.upn}

    def _ask(self, who: Principal, new: bodies.Target) -> Ask:
        """The request as the rules see it: the VM (its tags read), ports, duration (default
        an hour, or the rules' maximum when that is shorter)."""
        vm_id = new.vm_id(self.settings.subscription)
        tags = self.settings.vm_tags(vm_id) if self.settings.vm_tags else ()
        base = Ask(
            requester=who,
            vm_id=vm_id,
            ports=new.ports,
            duration=new.duration or bodies.DEFAULT_DURATION,
            at=self.store.clock.now(),
            vm_tags=tags,
            reason=new.reason,
            ticket=new.ticket,
            break_glass=new.break_glass,
            source=new.source,
        )
        if new.duration is None:
            limit = self.rules().evaluate(base).max_duration
            if limit is not None and limit < base.duration:
                return Ask(**{**base.__dict__, "duration": limit})
        return base

    def create(self, call: Call) -> dict[str, Any]:
        new = bodies.parse(bodies.NewRequest, call.body)
        if new.source is None:
            raise BadInput(
                "No source address: the broker opens the port for one address.",
                "Send 'source' (jitctl broker request sends this machine's public address).",
            )
        ask = self._ask(call.who, new)
        decision = self.rules().evaluate(ask)
        if self.settings.jit_check and decision.outcome is not Outcome.DENIED:
            self.settings.jit_check(ask.vm_id, tuple(ask.ports), new.source, ask.duration)
        rec = self.store.create(ask, decision, new.source)
        return request_json(rec, call.who, self.access)

    def list(self, call: Call) -> dict[str, Any]:
        """A page of requests, newest first; `older` (the answer's cursor) asks the next."""
        scope = call.params.get("scope", "mine")
        limit = bodies.limit(call.params.get("limit"), self.settings.list_limit)
        page = self.page(call.who, scope, limit, call.params.get("older"))
        return {
            "scope": scope,
            "requests": [*self.docs(page.rows, call.who)],
            "older": page.older,
        }

    def page(self, who: Principal, scope: str, size: int, cursor: str | None) -> Page:
        """The requests of a scope, as the API lists them and the pages show them."""
        return scope_page(self.store, self.access, who, scope, size, cursor)

    def _visible(self, call: Call) -> Any:
        rec = self.store.get(call.path["id"])
        if not self.access.may_see(rec, call.who):  # as if it did not exist: ids do not leak
            raise no_such_request(rec.id)
        return rec

    def show(self, call: Call) -> dict[str, Any]:
        return self.docs([self._visible(call)], call.who)[0]

    def docs(self, recs: Sequence[RequestRecord], who: Principal) -> Sequence[dict[str, Any]]:
        """The requests as JSON; the revoked ones' audit trails say what revoking did, the
        failed ones' why."""
        told = [
            r.id
            for r in recs
            if (r.state is State.REVOKED and r.released_at) or r.state is State.FAILED
        ]
        events = self.store.events_of(told)
        return [request_json(r, who, self.access, events) for r in recs]

    def approve(self, call: Call) -> dict[str, Any]:
        body = bodies.parse(bodies.Comment, call.body)
        rec = self._visible(call)
        done = self.store.approve(rec.id, call.who, body.comment, self.access.roles(rec, call.who))
        return request_json(done, call.who, self.access)

    def deny(self, call: Call) -> dict[str, Any]:
        body = bodies.parse(bodies.Reason, call.body)
        return self._decide(call, Action.DENY, body.reason)

    def decide(self, action: Action) -> Handler:
        def handler(call: Call) -> dict[str, Any]:
            body = bodies.parse(bodies.Comment, call.body)
            return self._decide(call, action, body.comment)

        return handler

    def _decide(
        self, call: Call, action: Action, reason: str | None, **values: Any
    ) -> dict[str, Any]:
        rec = self._visible(call)
        roles = self.access.roles(rec, call.who)
        data = {"extend_to": values["extend_to"].isoformat()} if "extend_to" in values else None
        done = self.store.decide(rec.id, action, call.who, roles, reason, data, **values)
        return request_json(done, call.who, self.access)

    def extend(self, call: Call) -> dict[str, Any]:
        """A new end, `duration` from now, within the rules' maximum (read again now: an
        extension is a new grant). The worker sends the initiate that makes it true in Azure."""
        body = bodies.parse(bodies.Extension, call.body)
        rec = self._visible(call)
        now = self.store.clock.now()
        # who and when first (the store checks again as it writes): the rules come after
        own = call.who.same_as(rec.requester, rec.requester_oid)
        check(
            Action.EXTEND,
            rec.state,
            held_roles(self.access.roles(rec, call.who), own, Action.EXTEND),
        )
        ask = Ask(
            requester=Principal(rec.requester, frozenset(rec.requester_groups)),
            vm_id=rec.vm_id,
            ports=rec.ports,
            duration=body.duration,
            at=now,
            vm_tags=self.settings.vm_tags(rec.vm_id) if self.settings.vm_tags else (),
            reason=rec.reason,
            ticket=rec.ticket,
            source=rec.source,
        )
        limit = self.rules().evaluate(ask).max_duration
        if limit is not None and body.duration > limit:
            raise BadInput(
                f"An extension of {bodies.human(body.duration)} is over the rules' maximum "
                f"{bodies.human(limit)}.",
                f"Extend by {bodies.human(limit)} or less.",
            )
        ends = now + body.duration
        if rec.min_approvals > 1:
            self._within_agreed(rec, ends, limit or MAX_DURATION)
        # ends_at stays Azure's end until the worker's new initiate is granted and verified
        return self._decide(
            call,
            Action.EXTEND,
            body.comment,
            extend_to=ends,
            extend_claimed_by=None,
            extend_claimed_at=None,
        )

    def _within_agreed(self, rec: RequestRecord, ends: datetime, longest: timedelta) -> None:
        """An extension is one person's decision: on a grant that took minApprovals >= 2
        people, it may not take the grant past `longest` (the rules' maxDuration, else Azure's
        24 h) from when access first went live; longer takes a new request, approved as
        this one was."""
        live = next(
            (e["at"] for e in self.store.events_of([rec.id]) if e["action"] == Action.ACTIVATE),
            None,
        )
        start = datetime.fromisoformat(live.replace("Z", "+00:00")) if live else rec.created_at
        cap = start + longest
        if ends > cap:
            left = max(cap - self.store.clock.now(), timedelta(0))
            more = (
                f"Extend by {bodies.human(left)} or less, or ask"
                if left >= timedelta(minutes=1)
                else "Ask"
            )
            raise NotPermitted(
                f"Request {rec.id} took {rec.min_approvals} approvals: one person's extension "
                f"may not take it past {bodies.human(longest)} from its start "
                f"({utc(cap)}).",
                f"{more} a new request (jitctl broker request), which its approvers decide.",
            )

    # --- the rules --------------------------------------------------------------------------

    def explain(self, call: Call) -> dict[str, Any]:
        """What would happen to a request by `as_user` (default: the caller, with the token's
        groups; another user with the groups given, since only their token has theirs)."""
        body = bodies.parse(bodies.Explain, call.body)
        who = call.who
        if body.as_user and body.as_user.lower() != who.upn.lower():
            who = Principal(body.as_user, frozenset(body.groups or ()))
        elif body.groups is not None:
            who = Principal(who.upn, frozenset(body.groups))
        ask = self._ask(who, body)
        return decision_json(self.rules().evaluate(ask), ask.vm_id, who.upn)

    def rules_in_force(self, call: Call) -> dict[str, Any]:
        """The approval rules this broker runs, for `policy plan --broker` (Azure stores none):
        its admins' and auditors' to read, as the log is."""
        self._auditor(call, "approval rules")
        return {"rules": rules_document(self.rules().rules)}

    # --- the audit log ----------------------------------------------------------------------

    def _auditor(self, call: Call, what: str = "audit log") -> None:
        if not self.access.reads_log(call.who):
            raise NotPermitted(
                f"{printable(call.who.upn)} may not read the broker's {what}.",
                "Ask a broker admin; auditors are set with JITCTL_BROKER_AUDITORS.",
            )

    def log(self, call: Call) -> Response:
        self._auditor(call)
        fmt = call.params.get("format", "jsonl")
        if fmt not in ("jsonl", "csv"):
            raise BadInput(f"Unknown log format '{printable(fmt)}'.", "Use jsonl or csv.")
        since = bodies.since(call.params.get("since"), self.store.clock.now())
        out = io.StringIO()
        self.store.export_log(out, fmt, since)
        media = "application/x-ndjson" if fmt == "jsonl" else "text/csv; charset=utf-8"
        return Response(out.getvalue(), 200, media_type=media)

    def verify_log(self, call: Call) -> dict[str, Any]:
        self._auditor(call)
        check = self.store.verify_log()
        return {
            "ok": check.ok,
            "events": check.events,
            "problems": list(check.problems),
            "head_hash": check.head_hash,
        }
