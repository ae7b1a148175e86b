"""Who may touch which collection: the one table the database users are made from.

Every process connects to the database as its own user, allowed exactly the
collections below and, on each, exactly the MongoDB privilege actions listed
(find, insert, update, remove, createIndex, createCollection). A compromised
router can then neither read notify's contacts nor intake's API token hashes.
The operator (the `lapor` CLI, migrations) owns the whole database.

The table is the list of what the code does today; a new query on another
collection fails with Unauthorized (13) until it is granted here. Two
collections are written by every process: `dead_letters` (a message that
breaks its contract is kept there by the service that got it) and
`delivery_failures` (the last error of a failing delivery, read by the watcher;
both in lapor.runtime.dead_letters).

Two renderings follow the table:
- MongoDB (docker compose): `ops/mongo/db-access.json`, which
  `ops/mongo/init-users.js` turns into one custom role and one user per
  process (`python -m lapor.runtime.db_access [--check]` writes or checks it);
- FerretDB (`make run`): the same document is the `-access` file of our
  FerretDB build, which refuses every command its user has no privilege for
  (ferretdb/patches/0005-...).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lapor.runtime.generated import write_or_check

FIND = "find"
INSERT = "insert"
UPDATE = "update"
REMOVE = "remove"
CREATE_INDEX = "createIndex"
CREATE_COLLECTION = "createCollection"
# On the database itself (collection ""): names of its collections, no data.
LIST_COLLECTIONS = "listCollections"

DATABASE = ""  # the "collection" of a privilege on the database itself

_OWN = (FIND, INSERT, UPDATE, CREATE_INDEX)
# What every process does with the two shared collections (see the module doc).
_SHARED: Mapping[str, tuple[str, ...]] = {
    "dead_letters": (INSERT,),
    "delivery_failures": (INSERT, UPDATE),
}

# Read-only, intake's: sla's breaches and notify's delivery log answer officers,
# whose bearer tokens they look up by hash (lapor.tokens.stored_tokens).
_TOKEN_CHECK: Mapping[str, tuple[str, ...]] = {"api_tokens": (FIND,)}

# process → collection → actions. The processes are the four services, the SMS
# gateway connector, the dead-letter watcher (`dlq`) and the operator.
GRANTS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "intake": {
        **_SHARED,
        "complaints": _OWN,
        "rejections": _OWN,
        # Login sessions are tokens too, indexed by account to revoke them all at once;
        # expired ones are deleted (sessions.purge_expired: FerretDB has no TTL index).
        "api_tokens": (FIND, INSERT, UPDATE, REMOVE, CREATE_INDEX),
        "accounts": (FIND, INSERT, UPDATE),
        # The agencies' open worklists, small entries kept with each complaint.
        "worklist_entries": (FIND, INSERT, UPDATE, CREATE_INDEX),
        # The complaint gauges' counters (kept with each change, reconciled under a
        # lease kept in the same collection); intake alone exports those gauges.
        "complaint_counts": (FIND, INSERT, UPDATE),
        # Failed logins (username, time, hashed address): kept, counted for throttling,
        # deleted after INTAKE_LOGIN_FAILURE_DAYS.
        "login_failures": (FIND, INSERT, REMOVE, CREATE_INDEX),
        # One document per sender number: its messages of the last two days, by source.
        "sender_activity": (FIND, INSERT, UPDATE),
        "rate_notices": (INSERT,),
        # Photos (GridFS bucket complaint_photos): remove for a failed or orphaned
        # upload only; refused uploads are kept as records, without their bytes.
        "complaint_photos.files": (FIND, INSERT, REMOVE, CREATE_INDEX),
        "complaint_photos.chunks": (FIND, INSERT, REMOVE, CREATE_INDEX),
        "photo_refusals": _OWN,
        # The lapor_dead_letters gauge counts pending records (intake alone exports it).
        "dead_letters": (FIND, INSERT),
        # Read-only, sla's: the public report counts breaches, when sla has any.
        "sla_breaches": (FIND,),
        # Read-only, the hotspots service's: the report ranks and counts hotspots.
        "hotspots": (FIND,),
        DATABASE: (LIST_COLLECTIONS,),
    },
    # The router keeps nothing of its own: its decisions travel as events.
    "router": {**_SHARED},
    "sla": {
        **_SHARED,
        # Facts stored by earlier versions, read once into the clock document.
        "sla_facts": (FIND, CREATE_INDEX),
        "sla_clocks": _OWN,
        "sla_timers": (FIND, INSERT, UPDATE, REMOVE, CREATE_INDEX),
        "sla_fired": _OWN,
        "sla_breaches": _OWN,
        **_TOKEN_CHECK,
    },
    "notify": {
        **_SHARED,
        "notify_contacts": (FIND, INSERT, UPDATE),
        # Routings stored apart before they went into the contact document: read only.
        "notify_routings": (FIND,),
        "notifications": _OWN,
        # Attempts of notifications stored before each record carried its own.
        "notification_attempts": _OWN,
        "notify_sms_budget": (FIND, INSERT, UPDATE),
        **_TOKEN_CHECK,
    },
    # Hotspots: the grouping's view of routed complaints (no text, no contact) and
    # the hotspots, whose changes wait in their outbox.
    "hotspots": {
        **_SHARED,
        "hotspot_members": (FIND, INSERT, UPDATE, CREATE_INDEX),
        # The lease that lets one replica at a time group complaints.
        "hotspot_leases": (FIND, INSERT, UPDATE),
        "hotspots": _OWN,
        **_TOKEN_CHECK,
    },
    # The SMS gateway connector: its record of what it handed to Kannel.
    "gateway": {
        **_SHARED,
        "gateway_submissions": (FIND, INSERT, UPDATE),
    },
    "dlq": {
        "dead_letters": (FIND, INSERT, UPDATE),
        "delivery_failures": (FIND,),
        # Its HTTP API answers admins only (services.deadletters.api).
        **_TOKEN_CHECK,
    },
}
OPERATOR = "operator"
PROCESSES = (*GRANTS, OPERATOR)

# Where personal data lies sealed (lapor.runtime.pii), for `lapor keys rotate`:
# collection → dotted path of a sealed value → the field of the same record it is
# bound to. OUTBOX_BODIES stands for the pending announcements of a collection
# (lapor.runtime.outbox), whose events carry reply addresses bound to their event.
OUTBOX_BODIES = "outbox"
SEALED_VALUES: Mapping[str, Mapping[str, str]] = {
    # notify reads these back with the symmetric key (the `pii1` form).
    "notify_contacts": {"sms": "_id", "email": "_id"},
    "dead_letters": {"payload_sealed": "_id"},
    "rejections": {"payload.payload_sealed": "source_key", OUTBOX_BODIES: ""},
    "complaints": {OUTBOX_BODIES: ""},
}
# Read back by a holder of the private key with the symmetric form; every other
# sealed value is sealed to the public key (the `pii2` form).
SYMMETRIC_SEALED = frozenset({"notify_contacts"})

ACCESS_JSON = Path(__file__).resolve().parents[2] / "ops" / "mongo" / "db-access.json"


def db_user(process: str) -> str:
    """The database login of a process (`lapor-intake`, …, `lapor-operator`)."""
    return f"lapor-{process}"


def password_env(process: str) -> str:
    """The variable holding that login's password in compose (LAPOR_DB_INTAKE_PASSWORD)."""
    return f"LAPOR_DB_{process.upper()}_PASSWORD"


def privileges(process: str) -> dict[str, list[str]]:
    """collection → actions of one process. Creating a collection comes with the
    right to insert into it or index it: both create it when it is missing."""
    granted: dict[str, list[str]] = {}
    for collection, actions in GRANTS[process].items():
        wanted = set(actions)
        if collection != DATABASE and wanted & {INSERT, CREATE_INDEX}:
            wanted.add(CREATE_COLLECTION)
        granted[collection] = sorted(wanted)
    return granted


def access_document(db: str = "lapor") -> dict[str, Any]:
    """The table as both MongoDB's initialisation and FerretDB's `-access` read it."""
    return {
        "db": db,
        "operator": db_user(OPERATOR),
        "operator_password_env": password_env(OPERATOR),
        "users": {
            db_user(process): {
                "password_env": password_env(process),
                "privileges": privileges(process),
            }
            for process in GRANTS
        },
    }


def render_access(db: str = "lapor") -> str:
    return json.dumps(access_document(db), indent=2) + "\n"


def main(argv: list[str]) -> int:
    """`python -m lapor.runtime.db_access [--check]`: write (or check) ops/mongo/db-access.json."""
    return write_or_check(
        {ACCESS_JSON: render_access()},
        check="--check" in argv,
        stale_message=lambda _: f"{ACCESS_JSON} is stale: run python -m lapor.runtime.db_access",
        announce=True,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
