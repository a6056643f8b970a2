"""Who may do what on NATS: the suite's users, their permissions, their passwords, and the
server's `authorization` block that declares them.

Anything that reaches NATS without credentials, or with another service's, must not be
able to put an event in a service's name on the stream: a forged
`crm.identify.transaction.recorded` would be applied by every consumer. So every
process has a user of its own:

- each stage service (user = its name) publishes only its own subjects `crm.<service>.>`
  and its dead-letter subject `crm.dlq.<service>`, pulls from and acks only its own
  durable consumers, reads their info, and receives only on its own inbox prefix
  (`_INBOX_<service>.>`, so no service can listen to another's deliveries or publish acks).
  It may not create, update or delete a stream or a consumer (but network, below): a user that may update the
  stream could add a subject transform and publish around its rights. identify may also
  get and delete single messages of the stream (erasure removes an erased customer's
  messages from what the stream still holds), and network may read the stream's state and
  pages of it with direct gets (the event feed, webhook replays), never write to it;
- the gateway (user `gateway`) only connects (its /readyz) and uses the key-value bucket
  `ratelimits` (its keys and the KV API on that bucket's stream, nothing else);
- `admin` may do everything, and is for `valuechain migrate` only, which provisions the
  stream, the consumers and the bucket (shared/events/bus.py `provision`).

Passwords are random (`secrets.token_urlsafe(32)`), compared in plain text by the server
(bcrypt would cost every connect and add nothing to a random secret kept 0600). Each is
the setting `password_variable(user)` when set, else the file `<var>/nats/<user>.password`,
made on first run like the admin key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from shared.events.contracts import dlq_subject
from shared.secret_files import read_or_create_secret, read_secret

ADMIN_USER = "admin"
GATEWAY_USER = "gateway"
RATELIMITS_BUCKET = "ratelimits"
# Services that may get and delete single stream messages: identify erases customers.
STREAM_MESSAGE_EDITORS = frozenset({"identify"})
# Services that may read any part of the stream (batched direct gets) and its state:
# network serves the event feed (services/network/feed) and webhook replays from it.
STREAM_READERS = frozenset({"network"})
# Services that make their own consumers while they run: network, one per webhook subscription.
CONSUMER_MAKERS = frozenset({"network"})
NATS_DIR = "nats"


class MissingCredentials(RuntimeError):
    """A process has no NATS password: neither its setting nor its file."""


def password_variable(user: str) -> str:
    """The setting that holds `user`'s password (the same name the server's template reads)."""

    if user == ADMIN_USER:
        return "VALUECHAIN_NATS_ADMIN_PASSWORD"
    return f"VALUECHAIN_{re.sub(r'[^A-Z0-9]', '_', user.upper())}_NATS_PASSWORD"


def password_path(var_dir: Path, user: str) -> Path:
    return Path(var_dir) / NATS_DIR / f"{user}.password"


def inbox_prefix(user: str) -> str:
    return f"_INBOX_{user}"


@dataclass(frozen=True)
class NatsCredentials:
    user: str
    password: str

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments of `nats.connect`: the user, and its own inbox prefix."""

        return {"user": self.user, "password": self.password, "inbox_prefix": inbox_prefix(self.user)}


def load_credentials(var_dir: Path, user: str, given: SecretStr | None) -> NatsCredentials:
    """`user`'s credentials: the password setting when given, else its file under `<var>/nats`."""

    if given is not None:
        return NatsCredentials(user, given.get_secret_value())
    path = password_path(var_dir, user)
    password = read_secret(path, hint=f", or set {password_variable(user)}")
    if password is None:
        raise MissingCredentials(
            f"no NATS password for user {user!r}: set {password_variable(user)}, or let `valuechain run` make {path}"
        )
    return NatsCredentials(user, password)


def ensure_passwords(var_dir: Path, given: Mapping[str, SecretStr | None]) -> dict[str, str]:
    """Every user's password: the setting when given, else its file, made when missing."""

    return {
        user: secret.get_secret_value()
        if secret is not None
        else read_or_create_secret(password_path(var_dir, user), hint=f", or set {password_variable(user)}")[0]
        for user, secret in given.items()
    }


# --- permissions -------------------------------------------------------------------


@dataclass(frozen=True)
class NatsUser:
    name: str
    publish: tuple[str, ...] | None  # None: everything (the admin)
    subscribe: tuple[str, ...] | None
    deny_publish: tuple[str, ...] = ()  # exceptions to `publish`'s wildcards


def consumer_rights(durables: Iterable[str], stream: str) -> list[str]:
    """What pulling from durable consumers needs: pull requests, acks, and their info."""

    rights = []
    for durable in sorted(durables):
        rights += [
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",  # pull requests
            f"$JS.ACK.{stream}.{durable}.>",  # ack, nak, term
            f"$JS.API.CONSUMER.INFO.{stream}.{durable}",  # is it provisioned? (readiness)
        ]
    return rights


def reader_user(name: str, durables: Iterable[str], stream: str) -> NatsUser:
    """A read-only user: pulls from and acks the consumers named, publishes nothing else
    (a partner's, on a consumer an operator made for it: docs/security.md)."""

    return NatsUser(name, tuple(consumer_rights(durables, stream)), (f"{inbox_prefix(name)}.>",))


def dynamic_consumer_rights(stream: str, own: Iterable[str], others: Iterable[str]) -> tuple[list[str], list[str]]:
    """(allowed, denied) for a service that makes consumers of its own while it runs: any
    consumer of `stream` but the suite's provisioned durables (its `own`, which it only
    pulls, and the `others`', which it may not touch at all)."""

    allowed = [
        f"$JS.API.CONSUMER.CREATE.{stream}.*",
        f"$JS.API.CONSUMER.CREATE.{stream}.*.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.*",
        f"$JS.API.CONSUMER.INFO.{stream}.*",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
        f"$JS.ACK.{stream}.*.>",
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
    ]
    denied = []
    for durable in sorted(set(own) | set(others)):
        denied += [
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}",
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.>",
            f"$JS.API.CONSUMER.DELETE.{stream}.{durable}",
        ]
    for durable in sorted(set(others) - set(own)):
        denied += [
            f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
        ]
    return allowed, denied


def service_user(service: str, durables: Iterable[str], stream: str, others: Iterable[str] = ()) -> NatsUser:
    """A stage service's user; `others`: every other service's durables (denied to a
    service in CONSUMER_MAKERS, whose rights on consumers are wildcards)."""

    durables = list(durables)
    publish = [f"crm.{service}.>", dlq_subject(service), *consumer_rights(durables, stream)]
    deny: list[str] = []
    if service in STREAM_MESSAGE_EDITORS:
        publish += [
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.STREAM.MSG.GET.{stream}",
            f"$JS.API.STREAM.MSG.DELETE.{stream}",
        ]
    if service in STREAM_READERS:
        publish += [f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.DIRECT.GET.{stream}"]
    if service in CONSUMER_MAKERS:
        allowed, deny = dynamic_consumer_rights(stream, durables, others)
        publish += allowed
    publish = list(dict.fromkeys(publish))  # network is both: one right named once
    return NatsUser(service, tuple(publish), (f"{inbox_prefix(service)}.>",), tuple(deny))


def gateway_user() -> NatsUser:
    kv = f"KV_{RATELIMITS_BUCKET}"
    publish = (
        f"$KV.{RATELIMITS_BUCKET}.>",
        f"$JS.API.STREAM.INFO.{kv}",
        f"$JS.API.STREAM.MSG.GET.{kv}",
        f"$JS.API.DIRECT.GET.{kv}",
        f"$JS.API.DIRECT.GET.{kv}.>",
        f"$JS.API.CONSUMER.CREATE.{kv}",
        f"$JS.API.CONSUMER.CREATE.{kv}.>",
        f"$JS.API.CONSUMER.INFO.{kv}.>",
        f"$JS.API.CONSUMER.DELETE.{kv}.>",
        f"$JS.API.CONSUMER.MSG.NEXT.{kv}.>",
        f"$JS.ACK.{kv}.>",
        f"$JS.FC.{kv}.>",
    )
    return NatsUser(GATEWAY_USER, publish, (f"{inbox_prefix(GATEWAY_USER)}.>",))


def admin_user() -> NatsUser:
    return NatsUser(ADMIN_USER, None, None)


# --- the server's configuration ----------------------------------------------------


def render_authorization(users: Iterable[NatsUser], passwords: Mapping[str, str] | None) -> str:
    """nats-server's `authorization` block for `users`. With `passwords`, the passwords are
    written in (the embedded server's file under `<var>/nats`, mode 0600); without, each is a
    reference to its environment variable (`password_variable`), which nats-server resolves
    at start: docker-compose's checked-in template, deploy/nats/nats-server.conf."""

    lines = ["authorization {", "  users: ["]
    for user in users:
        password = json.dumps(passwords[user.name]) if passwords is not None else f"${password_variable(user.name)}"
        lines += ["    {", f"      user: {json.dumps(user.name)}", f"      password: {password}"]
        if user.publish is not None or user.subscribe is not None:
            lines.append("      permissions: {")
            for kind, subjects in (("publish", user.publish), ("subscribe", user.subscribe)):
                if subjects is not None:
                    lines.append(f"        {kind}: {{allow: [")
                    lines += [f"          {json.dumps(subject)}" for subject in subjects]
                    denied = user.deny_publish if kind == "publish" else ()
                    if denied:
                        lines.append("        ], deny: [")
                        lines += [f"          {json.dumps(subject)}" for subject in denied]
                    lines.append("        ]}")
            lines.append("      }")
        lines.append("    }")
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"
