"""Every key of the tenancy table, in one place: the stores that share the table build their keys here.

One table, ``pk``/``sk`` keys, items grouped by family (the store that owns them in brackets):

    COMPANY#<alias>            #COMPANY          the company; ``pricing`` fixed by its first subscription
                                                 [tenancy]
    COMPANY#<alias>            SUB#<key>         a subscription (GSI attributes while it must be metered)
                                                 [tenancy]
    COMPANY#<alias>            ENV#<name>        an environment [tenancy]
    COMPANY#<alias>            BUYER#<account>   the account bought a subscription of the company [tenancy]
    SUBSCRIPTION#<key>         #CLAIM            which company holds a Marketplace subscription (and, for
                                                 an alias key, ``subscription`` = the key it stands for)
                                                 [tenancy]
    ACCOUNT#<account id>       #CLAIM            which company owns an AWS account (buyer or environment);
                                                 ``unverified_until`` while nobody proved it [tenancy]
    INSTANCE#<instance arn>    #ENV              instance -> (company, environment), the ingest lookup
                                                 [tenancy]
    COMPANY#<alias>            #METER            the metering worker's state for the company (versioned
                                                 JSON) [meter state, written by adapters/meter_store.py]
    COMPANY#<alias>            PENDING#<hour>…   a ledger record not yet settled with AWS Marketplace
                                                 [meter state, written by adapters/meter_store.py]
    COMPANY#<alias>            ACT#<env>         how many agent events ingest stored for the environment
                                                 [meter state]
    REGISTRATION#<sha256(id)>  #REGISTRATION     a pending registration (TTL ``expires_at``) [registration]
    TOKEN#<sha256(token)>      #USED             a registration token already posted (TTL) [registration]
    LIFECYCLE#<key>            #PENDING          notifications that arrived before the buyer signed up
                                                 [lifecycle]
    LIFECYCLE#PARKED           <parked_at>#<key> a subscription with kept notifications and no company yet
                                                 [lifecycle]
    LIFECYCLE#<key>            EVENT#<at>#<id>   every Marketplace notification (audit) [lifecycle]
    AUDIT#<alias>              <at>#<request id> the admin API's changes [audit; the key is the domain's
                                                 ``AuditEntry.partition``/``sort_key``]

The company partition holds the company's tenancy items and the meter's items side by side, so the
metering worker reads a company with ONE query (``DynamoTenancyStore.load_company``).

The sparse GSI ``active-subscriptions`` (``meter_shard``, ``started``) holds exactly the activated
subscriptions that still need hourly records; ``index_shard`` spreads it over ``INDEX_SHARDS`` keys.
"""

from __future__ import annotations

import zlib

PARTITION_KEY = "pk"
SORT_KEY = "sk"
ACTIVE_SUBSCRIPTIONS_INDEX = "active-subscriptions"
INDEX_PARTITION_KEY = "meter_shard"
INDEX_SORT_KEY = "started"
# Spreads the index over a few partitions so 10,000s of subscriptions never make one hot key.
INDEX_SHARDS = 4
# DynamoDB TTL attribute (epoch seconds) of items that expire: pending registrations, spent tokens.
TTL_ATTRIBUTE = "expires_at"

# Sort keys and prefixes ------------------------------------------------------------------------------

COMPANY_SK = "#COMPANY"
SUBSCRIPTION_PREFIX = "SUB#"
ENVIRONMENT_PREFIX = "ENV#"
# Marks an AWS account as a buyer of the company (legacy identities do not carry the account).
BUYER_SK_PREFIX = "BUYER#"
CLAIM_SK = "#CLAIM"
INSTANCE_SK = "#ENV"
# The metering worker's per-company state (JSON, versioned), beside the company so one query reads both.
METER_SK = "#METER"
# A marker per ledger record still pending (oldest hour first), so the same query finds what to resend.
PENDING_PREFIX = "PENDING#"
# Per environment, a counter of the agent events ingest stored (it only grows): when it has not moved
# since the meter last read an idle environment, the meter need not read that environment again.
ACTIVITY_PREFIX = "ACT#"
REGISTRATION_SK = "#REGISTRATION"
TOKEN_SK = "#USED"  # noqa: S105 (a sort key, not a secret)
PENDING_SK = "#PENDING"
PARKED_PK = "LIFECYCLE#PARKED"
EVENT_PREFIX = "EVENT#"


# Partition keys ---------------------------------------------------------------------------------------


def company_pk(alias: str) -> str:
    return f"COMPANY#{alias}"


def account_pk(account_id: str) -> str:
    return f"ACCOUNT#{account_id}"


def subscription_claim_pk(key: str) -> str:
    """A subscription key's claim, or an alias key's (a licence buyer's legacy CustomerIdentifier)."""
    return f"SUBSCRIPTION#{key}"


def instance_pk(instance_arn: str) -> str:
    return f"INSTANCE#{instance_arn}"


def registration_pk(id_digest: str) -> str:
    return f"REGISTRATION#{id_digest}"


def token_pk(token_digest: str) -> str:
    return f"TOKEN#{token_digest}"


def lifecycle_pk(subscription_key: str) -> str:
    """A subscription's kept notifications and its audit log (``LifecycleEvent.log_key`` for the log)."""
    return f"LIFECYCLE#{subscription_key}"


# Sort keys -------------------------------------------------------------------------------------------


def subscription_sk(key: str) -> str:
    return f"{SUBSCRIPTION_PREFIX}{key}"


def environment_sk(name: str) -> str:
    return f"{ENVIRONMENT_PREFIX}{name}"


def buyer_sk(account_id: str) -> str:
    return f"{BUYER_SK_PREFIX}{account_id}"


def activity_sk(environment: str) -> str:
    return f"{ACTIVITY_PREFIX}{environment}"


def pending_record_sk(hour: str, subscription_key: str, dimension: str) -> str:
    """A pending ledger record's marker (``hour`` as ISO, so markers sort oldest first)."""
    return f"{PENDING_PREFIX}{hour}#{subscription_key}#{dimension}"


def parked_sk(parked_at: str, subscription_key: str) -> str:
    """In ``PARKED_PK``: ISO instant first, so a key-range query finds the ones parked before a time."""
    return f"{parked_at}#{subscription_key}"


def event_sk(at: str, event_id: str) -> str:
    return f"{EVENT_PREFIX}{at}#{event_id}"


def index_shard(subscription_key: str) -> str:
    return f"shard#{zlib.crc32(subscription_key.encode()) % INDEX_SHARDS}"


def index_shards() -> list[str]:
    """Every value of the index's partition key, one query each."""
    return [f"shard#{shard}" for shard in range(INDEX_SHARDS)]
