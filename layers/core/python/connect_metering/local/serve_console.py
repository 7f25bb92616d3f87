"""What ``serve`` adds for the console: ``--registry R.json --events E.jsonl`` replayed into the server's own
embedded AWS before it listens (so the usage page shows real billed minutes), and the ``/dev/mailbox``
page. Local runtime only: never shipped in a Lambda asset.

The replay is the ``replay`` command's own (``local.replay.Replay``: the real ingest, dispatch and meter
handlers on the virtual clock), run into the server's ``EmbeddedAws`` instead of a fresh one, and until
the hour after the last event has been metered. Each company of the registry gets one console
administrator, ``admin@<alias>.example``, whose invitation is in the mailbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from connect_metering.domain.instants import MS_PER_HOUR, from_ms, hour_floor, to_ms
from connect_metering.local.console_offline import Mailbox
from connect_metering.local.embedded import EmbeddedAws
from connect_metering.local.replay import Delivery, Registry, Replay, load_faults, load_registry, read_events
from connect_metering.local.replay_engine import HandlersEngine
from connect_metering.web.pages import escape, link_list


@dataclass(frozen=True)
class Preload:
    """A registry and its events, read before the server starts; ``start`` is where its clock begins."""

    registry: Registry
    deliveries: tuple[Delivery, ...]
    start: datetime
    until_ms: int

    @classmethod
    def read(cls, registry_path: Path, events_path: Path | None) -> Preload:
        registry = load_registry(registry_path)
        deliveries = tuple(read_events(events_path)) if events_path is not None else ()
        arrivals = [d.arrival_ms for d in deliveries if d.arrival_ms is not None]
        starts = [to_ms(s.started) for c in registry.companies for s in c.subscriptions if s.started]
        first = min([*starts, *arrivals[:1]], default=None)
        if first is None:
            raise ValueError("serve: --registry: no subscription has a start and --events gives no event")
        # The hour of the last event is metered once it is over and the grace has passed.
        until = hour_floor(max(arrivals, default=first)) + 2 * MS_PER_HOUR + registry.policy.grace * 1000
        return cls(registry, deliveries, from_ms(first), until)

    def embedded_aws(self) -> EmbeddedAws:
        policy = self.registry.policy
        return EmbeddedAws(
            product_code=self.registry.product_code,
            start=self.start,
            dimensions=(policy.usage_dimension, policy.overage_dimension),
        )


class _ReplayInto(Replay):
    """``Replay`` run into an embedded AWS that outlives it (the server's), writing no output folder."""

    def into(self, aws: EmbeddedAws, deliveries: tuple[Delivery, ...], until_ms: int) -> None:
        start_ms = to_ms(aws.clock.now())
        with HandlersEngine(self.registry, self.faults, start_ms, self.results.append, into=aws) as engine:
            self.engine = engine
            self._replay(iter(deliveries), start_ms, until_ms)


def replay_into(aws: EmbeddedAws, preload: Preload) -> None:
    _ReplayInto(preload.registry, load_faults(None), Path()).into(aws, preload.deliveries, preload.until_ms)


def preload_administrators(preload: Preload) -> list[tuple[str, str]]:
    """(company alias, administrator email) of each registry company."""
    return [(company.alias, f"admin@{company.alias}.example") for company in preload.registry.companies]


def mailbox_page(mailbox: Mailbox) -> str:
    if not mailbox.mails:
        return (
            "<h1>Mailbox (local)</h1><p>No email yet. Sign up a company from "
            '<a href="/dev/marketplace">the simulated AWS Marketplace</a>: its contact email is invited to the '
            "console.</p>"
        )
    items = "".join(
        f'<li class="mail"><p><strong>To</strong> <span class="to">{escape(mail.to)}</span>, '
        f"{escape(mail.sent.strftime('%Y-%m-%d %H:%M:%S'))} UTC: <strong>{escape(mail.subject)}</strong></p>"
        f'<p class="body">{escape(mail.body)}</p></li>'
        for mail in reversed(mailbox.mails)
    )
    return (
        "<h1>Mailbox (local)</h1><p>Every email the product would send (deployed, Cognito sends the "
        f"invitations and password reset codes). Newest first.</p><ol>{items}</ol>"
        + link_list([("/console/", "Sign in to the console")])
    )
