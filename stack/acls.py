"""Kafka ACLs: every principal may do what its part needs, and nothing else.

With the standard authorizer and ``allow.everyone.if.no.acl.found=false``, whatever no ACL
allows is denied. The table below is the whole of what is allowed (super users apart:
the broker itself and the administrator, who create topics and ACLs):

| principal | writes | reads | groups |
|---|---|---|---|
| upstream | sales, surveys, trainings, partners | deadletters | ``upstream-*`` |
| finance | commands | refusals | ``finance-*`` |
| worker | clock, deadletters, refusals | the five sources and clock | ``<group>*`` |
| auditor | checkpoints | every topic | ``auditor-*`` |

WRITE comes from ``schemas.principals.PUBLISHER`` (one writer per topic, which is what
lets the ledger record the principal behind each message). The smoke flow's topics
(``<prefix>smoke*``) are written by upstream and read by the worker.

aiokafka has the wire formats of CreateAcls, DescribeAcls and DeleteAcls but no client
methods for them, so ``ensure_acls`` and ``delete_acls`` send them through the admin
client themselves. ``incentives init`` and ``stack up`` lay them; the test harness lays a
test's own (its topics have their own prefix) and removes them afterwards.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import (
    CreateAclsRequest_v0,
    CreateAclsRequest_v1,
    DeleteAclsRequest_v0,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v0,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request

from schemas.outcomes import REFUSALS
from schemas.principals import DEADLETTERS, PUBLISHER
from schemas.settings import PRINCIPALS, Principal, Settings
from schemas.streams import CLOCK, COMMANDS, PARTNERS, SALES, SURVEYS, TRAININGS

from .common import StackError

# Kafka's codes (org.apache.kafka.common.acl / resource).
TOPIC, GROUP = 2, 3
ANY, LITERAL, PREFIXED = 1, 3, 4  # pattern types; ANY is also "any" for the other fields
READ, WRITE = 3, 4
ALLOW = 3
OPERATIONS = {READ: "READ", WRITE: "WRITE"}

READS: dict[Principal, tuple[str, ...]] = {
    "upstream": (DEADLETTERS,),
    "finance": (REFUSALS,),
    "worker": (SALES, SURVEYS, TRAININGS, PARTNERS, COMMANDS, CLOCK),
    "auditor": tuple(PUBLISHER),
}
SMOKE = "smoke"


@dataclass(frozen=True, slots=True, order=True)
class Binding:
    """One ALLOW rule: ``principal`` may ``operation`` on the resource, from any host."""

    resource_type: int
    name: str
    pattern: int
    principal: str  # "User:<name>"
    operation: int

    def __str__(self) -> str:
        kind = "topic" if self.resource_type == TOPIC else "group"
        star = "*" if self.pattern == PREFIXED else ""
        return f"{self.principal} {OPERATIONS[self.operation]} {kind} {self.name}{star}"


def bindings(settings: Settings) -> list[Binding]:
    """Every ACL of the system for these settings (topic prefix, group, user names)."""
    def user(p: Principal) -> str:
        return f"User:{settings.kafka_user(p)}"

    found = [Binding(TOPIC, settings.topic(s), LITERAL, user(p), WRITE)
             for s, p in PUBLISHER.items()]  # fmt: skip
    found += [Binding(TOPIC, settings.topic(s), LITERAL, user(p), READ)
              for p, streams in READS.items() for s in streams]  # fmt: skip
    found.append(Binding(GROUP, settings.consumer_group, PREFIXED, user("worker"), READ))
    found += [Binding(GROUP, f"{p}-", PREFIXED, user(p), READ)
              for p in PRINCIPALS if p not in ("worker", "admin")]  # fmt: skip
    found.append(Binding(TOPIC, settings.topic(SMOKE), PREFIXED, user("upstream"), WRITE))
    found.append(Binding(TOPIC, settings.topic(SMOKE), PREFIXED, user("worker"), READ))
    return sorted(set(found))


class _CreateAcls(Request[CreateAclsRequest_v0 | CreateAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 30

    def __init__(self, wanted: list[Binding]) -> None:
        self._wanted = wanted

    def build(self, request_struct_class: Any) -> Any:
        if request_struct_class.API_VERSION < 1:
            raise StackError("the broker is too old for prefixed ACLs (CreateAcls v1)")
        return request_struct_class(
            [(b.resource_type, b.name, b.pattern, b.principal, "*", b.operation, ALLOW)
             for b in self._wanted]
        )  # fmt: skip


class _DeleteAcls(Request[DeleteAclsRequest_v0 | DeleteAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 31

    def __init__(self, doomed: list[Binding]) -> None:
        self._doomed = doomed

    def build(self, request_struct_class: Any) -> Any:
        return request_struct_class(
            [(b.resource_type, b.name, b.pattern, b.principal, "*", b.operation, ALLOW)
             for b in self._doomed]
        )  # fmt: skip


class _DescribeAcls(Request[DescribeAclsRequest_v0 | DescribeAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 29

    def build(self, request_struct_class: Any) -> Any:
        # Every ACL: any resource, pattern, principal, host, operation and permission.
        return request_struct_class(ANY, None, ANY, None, None, ANY, ANY)


def admin_client(settings: Settings, **options: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap, **settings.kafka_auth("admin"), **options
    )


async def ensure_acls(settings: Settings, wanted: list[Binding] | None = None) -> list[Binding]:
    """Lay the ACLs (those missing; existing ones stay), wait until the broker enforces
    them; return those added."""
    wanted = bindings(settings) if wanted is None else wanted
    admin = admin_client(settings)
    await admin.start()
    try:
        missing = sorted(set(wanted) - await current_acls(admin))
        if missing:
            response = (await admin._send_request(_CreateAcls(missing))).to_object()
            failed = [r for r in response["creation_responses"] if r["error_code"]]
            if failed:
                raise StackError(f"Kafka refused ACLs: {failed[0]['error_message']}")
            await _until_listed(admin, set(missing), settings.start_timeout_s)
        return missing
    finally:
        await admin.close()


async def delete_acls(settings: Settings, doomed: list[Binding]) -> None:
    admin = admin_client(settings)
    await admin.start()
    try:
        if doomed:
            await admin._send_request(_DeleteAcls(doomed))
    finally:
        await admin.close()


async def current_acls(admin: AIOKafkaAdminClient) -> set[Binding]:
    response = (await admin._send_request(_DescribeAcls())).to_object()
    if response["error_code"]:
        raise StackError(f"Kafka did not list its ACLs: {response['error_message']}")
    return {
        Binding(r["resource_type"], r["resource_name"], r["resource_pattern_type"],
                a["principal"], a["operation"])
        for r in response["resources"] for a in r["acls"]
        if a["permission_type"] == ALLOW and a["host"] == "*"
    }  # fmt: skip


async def _until_listed(admin: AIOKafkaAdminClient, wanted: set[Binding], timeout_s: float) -> None:
    """The controller acknowledges ACLs before the broker's authorizer has them; a client
    allowed by them a moment later would be refused. The broker lists what it enforces."""
    deadline = time.monotonic() + timeout_s
    while not wanted <= await current_acls(admin):
        if time.monotonic() > deadline:
            raise StackError(f"Kafka did not list {len(wanted)} new ACLs within {timeout_s} s")
        await asyncio.sleep(0.05)
