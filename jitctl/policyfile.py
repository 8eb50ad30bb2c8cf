"""Policy files: the YAML model, its JSON Schema, and validation that reports file:line: key.

One pydantic model validates every file; a YAML node walk maps each error back to its line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from jitctl import fieldchecks
from jitctl.approvalschema import Approval
from jitctl.errors import BadInput
from jitctl.model import PortRule
from jitctl.parsing import (
    format_human_duration,
    is_any_source,
    parse_duration,
    parse_protocol,
    parse_source,
)
from jitctl.policynames import check_policy_name
from jitctl.textsafe import printable

Protocol = Literal["tcp", "udp", "any"]


def _check_sources(value: list[str] | None, allow_any: bool | None) -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise ValueError(
            "list at least one source, or leave 'sources' out to allow any requester address"
        )
    out = []
    for item in value:
        if is_any_source(str(item)) and not allow_any:
            raise ValueError(
                f"'{item}' lets anyone request access from anywhere; set allowAnySource: true if "
                "you mean it, or leave 'sources' out to let requesters ask for their own address"
            )
        try:
            out.append(parse_source(str(item), allow_any=True))
        except BadInput as err:
            raise ValueError(err.one_line()) from None
    return out


def _check_policy_name(value: str | None) -> str | None:
    try:
        return None if value is None else check_policy_name(value)
    except BadInput as err:
        raise ValueError(err.message) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PortSpec(_Strict):
    """A port; settings left out come from the file's defaults."""

    number: StrictInt = Field(ge=1, le=65535, description="Port number")
    protocol: Protocol | None = Field(None, description="tcp, udp or any")
    allowAnySource: bool | None = Field(None, description="Allow '*' or 0.0.0.0/0 in sources")
    sources: list[str] | None = Field(
        None, description="Allowed requester ranges; leave out for any address"
    )
    maxDuration: str | None = Field(None, description="Longest request: 90m, 3h, PT3H (5m to 24h)")

    @field_validator("number", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        return fieldchecks.port(v)

    @field_validator("maxDuration")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        return fieldchecks.duration(v)

    @field_validator("sources")
    @classmethod
    def _sources(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        return _check_sources(v, info.data.get("allowAnySource"))


class Defaults(_Strict):
    protocol: Protocol = "any"
    allowAnySource: bool = False
    sources: list[str] | None = None
    maxDuration: str = "3h"
    policyName: str = "default"

    @field_validator("maxDuration")
    @classmethod
    def _duration(cls, v: str) -> str:
        return fieldchecks.duration(v) or v

    @field_validator("policyName")
    @classmethod
    def _policy_name(cls, v: str) -> str:
        return _check_policy_name(v) or v

    @field_validator("sources")
    @classmethod
    def _sources(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        return _check_sources(v, info.data.get("allowAnySource"))


class Target(_Strict):
    """Which VMs (ids; or a resource group with name globs; or tags) and their ports."""

    ids: list[str] | None = Field(None, description="Full VM resource ids")
    resourceGroup: str | None = Field(None, description="Resource group to match names or tags in")
    names: list[str] | None = Field(None, description="VM name globs, e.g. web-*")
    tags: dict[str, str] | None = Field(
        None, description="Every tag must match (value '*' for any)"
    )
    subscriptions: list[str] | None = Field(
        None, description="Defaults to the file's, else the current one"
    )
    policyName: str | None = None
    ports: list[PortSpec] = Field(min_length=1)

    @field_validator("policyName")
    @classmethod
    def _policy_name(cls, v: str | None) -> str | None:
        return _check_policy_name(v)

    @field_validator("ports", mode="before")
    @classmethod
    def _short_ports(cls, v: Any) -> Any:
        return (
            [{"number": p} if isinstance(p, int) and not isinstance(p, bool) else p for p in v]
            if isinstance(v, list)
            else v
        )

    _ids = field_validator("ids")(staticmethod(fieldchecks.vm_ids))
    _subscriptions = field_validator("subscriptions")(staticmethod(fieldchecks.subscriptions))
    _group = field_validator("resourceGroup")(staticmethod(fieldchecks.resource_group))

    @model_validator(mode="after")
    def _one_selector(self) -> Target:
        by_id = bool(self.ids)
        by_query = bool(self.resourceGroup or self.names or self.tags)
        if by_id == by_query:
            raise ValueError("give either 'ids', or 'resourceGroup' with 'names' and/or 'tags'")
        if by_query and not (self.names or self.tags):
            raise ValueError("with 'resourceGroup', give 'names' (globs such as '*') or 'tags'")
        numbers = [p.number for p in self.ports]
        if len(numbers) != len(set(numbers)):
            raise ValueError("a port is listed twice")
        return self


class PolicyFile(_Strict):
    """A jitctl policy file (YAML)."""

    subscriptions: list[str] | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    targets: list[Target] = Field(min_length=1)
    approvals: list[Approval] = Field(
        default_factory=list, description="Approval rules the broker applies (docs/broker.md)"
    )

    @field_validator("subscriptions")
    @classmethod
    def _subscriptions(cls, v: list[str] | None) -> list[str] | None:
        return fieldchecks.subscriptions(v)


def json_schema() -> dict[str, Any]:
    schema = PolicyFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "jitctl policy file"
    return schema


# --- loading with lines ----------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        """One line, whatever the file holds: its name, keys and values are escaped."""
        return printable(f"{self.file}:{self.line}: {self.key}: {self.message}")


@dataclass(frozen=True)
class LoadedFile:
    path: str
    model: PolicyFile
    lines: dict[tuple[Any, ...], int]

    def line(self, *loc: Any) -> int:
        return line_of(self.lines, loc)

    def origin(self, *loc: Any) -> str:
        return f"{self.path}:{self.line(*loc)}"


def _line_map(node: Any, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    import yaml

    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            sub = (*path, key.value)
            _line_map(value, sub, out)
            out[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, i), out)


def line_of(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def key_of(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def load_file(path: Path, shown: str | None = None) -> tuple[LoadedFile | None, list[Problem]]:
    from jitctl.yamlload import YamlProblem, compose_bounded

    name = shown or str(path)
    try:
        node, data = compose_bounded(path)
    except YamlProblem as err:
        return None, [Problem(name, err.line, err.key, err.message)]
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _line_map(node, (), lines)
    try:
        model = PolicyFile.model_validate(data if data is not None else {})
    except ValidationError as err:
        problems = []
        for e in err.errors():
            loc = tuple(
                x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-"))
            )
            message = e["msg"].removeprefix("Value error, ")
            problems.append(Problem(name, line_of(lines, loc), key_of(loc), message))
        return None, sorted(problems, key=lambda p: p.line)
    return LoadedFile(name, model, lines), []


POLICY_SUFFIXES = (".yaml", ".yml")  # what a folder's policy files end with
POLICY_FILES = " and ".join("*" + s for s in POLICY_SUFFIXES)  # for messages


def policy_paths(path: Path) -> list[Path]:
    """A file, or the *.yaml / *.yml files of a folder (not its subfolders)."""
    try:
        if path.is_file():
            return [path]
        if path.is_dir():
            return sorted(p for p in path.iterdir() if p.suffix in POLICY_SUFFIXES and p.is_file())
    except (OSError, ValueError):  # a NUL in the name, a folder that cannot be listed
        pass
    raise BadInput(
        f"'{printable(path)}' is neither a policy file nor a folder.",
        "Give a .yaml file or a folder of them.",
    )


NO_FILES_HINT = "Check the path; 'jitctl policy export -g RG --file FOLDER/RG.yaml' writes one."


def no_files_found(where: str) -> str:
    return (
        f"No policy files in {where} (jitctl reads the {POLICY_FILES} files of a folder, not "
        "its subfolders)"
    )


def no_policy_files(path: Path) -> BadInput:
    """A folder without policy files is bad input, never an empty configuration (terraform
    refuses one too): applied with --prune it would empty every JIT policy."""
    return BadInput(no_files_found(f"'{printable(path)}'") + ".", NO_FILES_HINT)


def load_all(path: Path) -> tuple[list[LoadedFile], list[Problem]]:
    files, problems = [], []
    for p in policy_paths(path):
        loaded, found = load_file(p)
        problems.extend(found)
        if loaded:
            files.append(loaded)
    return files, problems


def port_rule(spec: PortSpec, defaults: Defaults) -> PortRule:
    """The JIT port rule a file asks for, defaults filled in."""
    sources = spec.sources if spec.sources is not None else (defaults.sources or ["*"])
    return PortRule(
        number=spec.number,
        protocol=parse_protocol(spec.protocol or defaults.protocol),
        max_duration=parse_duration(spec.maxDuration or defaults.maxDuration),
        allowed_source_address_prefix=sources[0] if len(sources) == 1 else None,
        allowed_source_address_prefixes=tuple(sources) if len(sources) > 1 else None,
    )


def export_port(rule: PortRule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "number": rule.number,
        "protocol": {"*": "any"}.get(rule.protocol, rule.protocol.lower()),
        "maxDuration": format_human_duration(rule.max_duration),
    }
    if rule.sources != ("*",):
        out["sources"] = list(rule.sources)
        if any(is_any_source(s) for s in rule.sources):
            out["allowAnySource"] = True
    return out
