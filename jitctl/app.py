"""The App: everything a command needs (gateway, clock, subscription), built lazily and injectable."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jitctl.clock import Clock, SystemClock
from jitctl.errors import BadInput

if TYPE_CHECKING:  # the model behind the Gateway costs ~13 ms; --help does not need it
    from jitctl.broker.identity import TokenVerifier
    from jitctl.gateway import Gateway

EMULATED_PROPAGATION = 3.0  # seconds; Azure takes about a minute


@dataclass
class App:
    subscription: str | None = None
    subscriptions: tuple[str, ...] = ()  # every -s given (repeatable); subscription is the first
    all_subscriptions: bool = False
    cloud: str | None = None
    arm_endpoint: str | None = None
    emulator: bool = False
    debug: bool = False
    output: str = "table"  # json | jsonc | yaml | yamlc | table | tsv | none
    query: str | None = None  # JMESPath over the JSON result
    verbose: bool = False
    only_show_errors: bool = False
    interactive: bool | None = None  # may we ask questions? None: when stdin is a terminal
    clock: Clock = field(default_factory=SystemClock)  # tests pass a FakeClock
    backend: Any = None  # an emulator Backend, when running against one
    state_file: Path | None = None
    store: Any = None  # the --emulator state file: one transaction per ARM request
    runner: Any = None  # launches programs (jitctl.launch.Runner); tests inject a fake
    ip_fetch: Any = None  # HTTP GET for the IP echo services; tests inject a fake
    data_dir: Path | None = None  # where .rdp files go (the user's data directory)
    max_parallel: int | None = None  # ARM reads in flight at once; None: JITCTL_MAX_PARALLEL
    as_user: str | None = None  # --as: the emulator's test user the broker commands act as
    azure_credential: Any = None  # a TokenCredential; None: DefaultAzureCredential (tests inject)
    broker_http: Any = None  # an httpx.Client for the broker's API; tests pass an in-process one
    serve_broker: Any = (
        None  # runs `broker serve` (server.serve: uvicorn); tests keep it in-process
    )
    _gateway: Gateway | None = None
    _fleet: Any = None
    _seen: list[tuple[str, str]] | None = None  # (id, name) of the subscriptions ARM lists

    def get_runner(self) -> Any:
        if self.runner is None:
            from jitctl.launch import SystemRunner

            self.runner = SystemRunner()
        return self.runner

    def get_data_dir(self) -> Path:
        if self.data_dir is None:
            from platformdirs import user_data_dir

            self.data_dir = Path(user_data_dir("jitctl", appauthor=False))
        return self.data_dir

    def can_ask(self) -> bool:
        if self.interactive is None:
            import sys

            return sys.stdin.isatty()
        return self.interactive

    def public_ip(self, note: Callable[[str], None] | None = None) -> str:
        """This machine's public IPv4 address. Against the emulator, the documentation address
        stands in (nothing is looked up), and `note` is told so."""
        from jitctl.publicip import detect_public_ip, emulated_public_ip, http_fetch

        if not self.emulator:
            return detect_public_ip(self.ip_fetch or http_fetch)
        address, said = emulated_public_ip()
        if note is not None:
            note(said)
        return address

    @classmethod
    def for_backend(cls, backend: Any, subscription: str | None = None) -> App:
        """An App wired to an in-process emulator (tests, demo)."""
        return cls(subscription=subscription, emulator=True, clock=backend.clock, backend=backend)

    # --- the emulator -----------------------------------------------------------------------

    def _load_emulator(self) -> Any:
        from jitctl.emulator.backend import Backend
        from jitctl.emulator.settings import Settings
        from jitctl.emulator.statefile import emulator_state_file
        from jitctl.emulator.store import open_store
        from jitctl.emulator.worlds import WORLDS

        self.state_file = self.state_file or emulator_state_file()
        world = WORLDS[os.environ.get("JITCTL_EMULATOR_WORLD", "demo")]
        # The App's clock is the emulator's too: a test's fake clock moves both
        backend = Backend(
            settings=Settings(propagation_delay=EMULATED_PROPAGATION), clock=self.clock
        )
        self.store = open_store(self.state_file, backend, seed=world)
        return backend

    def identity_provider(self) -> Any:
        """The emulator's OpenID Connect provider (jitctl.emulator.oidc), on this App's state."""
        from jitctl.emulator.oidc import IdentityProvider

        if self.backend is None:
            self.backend = self._load_emulator()
        return IdentityProvider(
            self.backend, transaction=self.store.request if self.store is not None else None
        )

    def emulator_token(self, upn: str | None, audience: str) -> str:
        """A token the emulator signs for one of its test users (`--as`; EMULATOR.md), to
        `audience`, else to the emulated broker's app (what `broker serve` accepts there)."""
        from jitctl.emulator.oidc import BROKER_APP_ID, DEFAULT_USER, USERS

        who = (upn or DEFAULT_USER).strip().lower()
        if who not in USERS:
            raise BadInput(
                f"--as {upn}: the emulator has no such test user.",
                f"Use one of: {', '.join(USERS)}.",
            )
        token: str = self.identity_provider().mint(who, audience=audience or BROKER_APP_ID)
        return token

    def token_verifier(self, issuer: str | None, audience: str | None) -> TokenVerifier:
        """The broker's check of bearer tokens: against the issuer's keys over HTTPS, or with
        --emulator against the emulator's identity provider through the in-process transport
        (the same code either way; issuer and audience default to the emulator's)."""
        from jitctl.broker.identity import HttpsJson, TokenVerifier

        if not self.emulator:
            return TokenVerifier(issuer or "", audience or "", clock=self.clock)
        from jitctl.emulator.oidc import BROKER_APP_ID
        from jitctl.emulator.transport import emulator_session

        idp = self.identity_provider()
        source = HttpsJson(emulator_session(idp))
        return TokenVerifier(
            issuer or idp.issuer, audience or BROKER_APP_ID, jwks=source, clock=self.clock
        )

    def close(self) -> None:
        """Let go of the --emulator state file; each request already committed its changes."""
        if self.store is not None:
            self.store.close()
            self.store = None

    # --- Azure ------------------------------------------------------------------------------

    @property
    def subscription_id(self) -> str:
        """The one subscription of a command that works on one (more is bad input, exit 2)."""
        if self.all_subscriptions or len(self.subscriptions) > 1:
            raise BadInput(
                "This command works on one subscription.",
                "Give one --subscription/-s; --all-subscriptions and a repeated -s are for "
                "list, status, history, policy export/plan/apply and audit.",
            )
        return self.default_subscription()

    def subscription_ids(self) -> list[str]:
        """The subscriptions of a fleet command: every -s, or all the enabled ones with
        --all-subscriptions, else the one default subscription."""
        if self.all_subscriptions:
            found = [s.id for s in self.fleet().subscriptions()]
            if not found:
                raise BadInput(
                    "The credential sees no enabled subscription.",
                    "Sign in with an account that has Reader on a subscription, or pass -s.",
                )
            return found
        if len(self.subscriptions) > 1:
            return list(dict.fromkeys(self.resolve(s) for s in self.subscriptions))
        return [self.default_subscription()]

    def resolve(self, name: str) -> str:
        """The id of a subscription given by name or id: as the emulator names them; else
        from az's profile, else among the subscriptions the credential sees (listed once)."""
        if self.emulator:
            if self.backend is None:
                self.backend = self._load_emulator()
            from jitctl.clouds import subscription_by_name

            subs = self.backend.state["subscriptions"].values()
            named = ((str(s["subscriptionId"]), str(s["displayName"])) for s in subs)
            return subscription_by_name(name, named, complete=True)  # it knows them all
        from jitctl.clouds import resolve_subscription

        return resolve_subscription(name, self._seen_subscriptions) or name

    def _seen_subscriptions(self) -> list[tuple[str, str]]:
        if self._seen is None:
            self._seen = [(s.id, s.name) for s in self.fleet().subscriptions()]
        return self._seen

    def default_subscription(self) -> str:
        if self.subscription:
            return self.resolve(self.subscription)
        if self.emulator:
            if self.backend is None:
                self.backend = self._load_emulator()
            subs = list(self.backend.state["subscriptions"].values())
            if subs:
                return str(subs[0]["subscriptionId"])
        from jitctl.clouds import azure_sign_in_found, resolve_subscription

        sub = resolve_subscription(None)
        if not sub and azure_sign_in_found():
            raise BadInput(
                "No subscription given.",
                "Pass --subscription/-s, set AZURE_SUBSCRIPTION_ID, or run 'az account set'.",
            )
        if not sub:  # a first run, perhaps only to try it: say how to without Azure
            raise BadInput(
                "No subscription given, and no Azure sign-in found.",
                "Run 'az login', or pass --subscription/-s; to try jitctl without Azure, add "
                "--emulator (or set JITCTL_EMULATOR=1).",
            )
        return sub

    def gateway(self) -> Gateway:
        if self._gateway is None:
            from jitctl.arm.gateway import AzureGateway

            self._gateway = AzureGateway(self.connection())
        return self._gateway

    def fleet(self) -> Any:
        """The FleetGateway (Resource Graph across subscriptions), sharing the gateway's clients."""
        if self._fleet is None:
            from jitctl.arm.graph import FleetReader

            gw = self.gateway()
            self._fleet = FleetReader(
                self.connection(),
                gw.list_policies,
                self.clock,
                gw.parallel,
                list_subscriptions=gw.list_subscriptions,
            )
        return self._fleet

    def arm_calls(self) -> int | None:
        return len(self.backend.log) if self.backend is not None else None

    def connection(self) -> Any:
        from jitctl.arm.gateway import Connection

        kwargs: dict[str, Any] = {"polling_interval": 1}
        if self.emulator:
            from jitctl.emulator.responses import Router
            from jitctl.emulator.store import StoredRouter
            from jitctl.emulator.transport import StaticCredential, emulator_transport

            sub = self.default_subscription()  # loads the backend
            router: Any = Router(self.backend)
            if self.store is not None:
                router = StoredRouter(router, self.store)
            kwargs.update(
                transport=emulator_transport(router),
                polling_interval=0,
                retry_backoff_factor=0.01,
            )
            return Connection(
                StaticCredential(),
                sub,
                "https://management.emulator.invalid",
                ("https://management.emulator.invalid/.default",),
                kwargs,
                self.parallel_limit(),
                self.clock,
            )
        from jitctl.clouds import resolve_cloud

        cloud = resolve_cloud(
            self.cloud, self.arm_endpoint or os.environ.get("JITCTL_ARM_ENDPOINT")
        )
        credential = self.credential()
        from jitctl.clouds import resolve_subscription

        try:  # offline (az's profile, the environment): the commands resolve theirs
            sub = resolve_subscription(self.subscription) or ""
        except BadInput:
            sub = ""  # a name only ARM knows (App.resolve lists the subscriptions through this)
        return Connection(
            credential,
            sub,
            cloud.arm_endpoint,
            (cloud.scope,),
            kwargs,
            self.parallel_limit(),
            self.clock,
        )

    def credential(self) -> Any:
        """Azure's DefaultAzureCredential for the cloud in force, made once (ARM and the broker
        share it, so a sign-in is asked for once)."""
        if self.azure_credential is None:
            from azure.identity import DefaultAzureCredential

            from jitctl.clouds import resolve_cloud

            cloud = resolve_cloud(
                self.cloud, self.arm_endpoint or os.environ.get("JITCTL_ARM_ENDPOINT")
            )
            kwargs: dict[str, Any] = {"authority": cloud.authority} if cloud.authority else {}
            self.azure_credential = DefaultAzureCredential(**kwargs)
        return self.azure_credential

    def access_token(self, scope: str) -> str:
        """A bearer token for `scope` from the App's credential (the broker's API)."""
        from jitctl.arm.errors import azure_errors

        with azure_errors():
            token: str = self.credential().get_token(scope).token
        return token

    def parallel_limit(self) -> int:
        if self.max_parallel is None:
            self.max_parallel = max_parallel_setting(os.environ.get("JITCTL_MAX_PARALLEL"))
        return self.max_parallel


PARALLEL_RANGE = (1, 64)


def max_parallel_setting(text: str | None) -> int:
    """JITCTL_MAX_PARALLEL: how many ARM reads may be in flight at once (1 = one by one)."""
    from jitctl.arm.gateway import MAX_PARALLEL

    if text is None or not text.strip():
        return MAX_PARALLEL
    low, high = PARALLEL_RANGE
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if not low <= value <= high:
        raise BadInput(
            f"JITCTL_MAX_PARALLEL is {text.strip()!r}: it takes a whole number from {low} to "
            f"{high}.",
            f"Unset it for the default ({MAX_PARALLEL}), or set e.g. JITCTL_MAX_PARALLEL=8.",
        )
    return value
