"""DynamoDB requests attributed to the companies they serve (the metering benchmark's per-company figure).

A request's share goes to the companies its parameters name: a query, get or single write names one
company's partition; a batch or transaction is split evenly between its entries (a BatchWriteItem of 25
settle writes of 13 companies charges each company for its own entries), an entry naming several
companies is split between them. A request that names no company (the dispatcher's index and late-event
queries) is shared pro rata by every company of the run, so the per-company figures add up to the total.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ENTRY_LISTS = {
    "BatchWriteItem": "RequestItems",
    "BatchGetItem": "RequestItems",
    "TransactWriteItems": "TransactItems",
    "TransactGetItems": "TransactItems",
}


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for inner in value.values():
            yield from _strings(inner)
    elif isinstance(value, (list, tuple)):
        for inner in value:
            yield from _strings(inner)


def _entries(operation: str, params: Mapping[str, Any]) -> Sequence[object]:
    """The request's entries: each batch or transaction item on its own, else the request as one."""
    container = ENTRY_LISTS.get(operation)
    if container is None:
        return [params]
    entries = params.get(container, [])
    if isinstance(entries, Mapping):  # {table: [write, ...]} or {table: {"Keys": [key, ...]}}
        return [
            entry
            for table_entries in entries.values()
            for entry in (table_entries["Keys"] if isinstance(table_entries, Mapping) else table_entries)
        ]
    return list(entries)


@dataclass
class CompanyRequests:
    """Counts, per company, its share of every DynamoDB request made through the watched clients.

    ``company_of`` maps an identifier found in a request (``pattern`` finds them) to its company, or None.
    """

    pattern: re.Pattern[str]
    company_of: Callable[[str], str | None]
    shares: dict[str, float] = field(default_factory=dict)
    unattributed: float = 0.0
    requests: int = 0

    def watch(self, events: Any) -> None:
        events.register("before-parameter-build.dynamodb.*", self._count)

    def clear(self) -> None:
        self.shares.clear()
        self.unattributed = 0.0
        self.requests = 0

    def per_company(self, companies: Sequence[str], everyone: int) -> float:
        """The mean requests of ``companies``: their own shares plus each one's pro-rata part (one of
        ``everyone``) of the requests that named no company."""
        if not companies:
            return 0.0
        own = sum(self.shares.get(company, 0.0) for company in companies)
        return own / len(companies) + self.unattributed / everyone

    def _count(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        self.requests += 1
        entries = _entries(model.name, params)
        if not entries:
            self.unattributed += 1
            return
        for entry in entries:
            named = {
                company
                for text in _strings(entry)
                for found in self.pattern.findall(text)
                if (company := self.company_of(found)) is not None
            }
            if not named:
                self.unattributed += 1 / len(entries)
            for company in named:
                self.shares[company] = self.shares.get(company, 0.0) + 1 / len(entries) / len(named)
