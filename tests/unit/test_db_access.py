"""One database user per process, from one table (lapor/runtime/db_access.py).

Compose: every process's MONGO_URL names its own user, and the mongo
initialisation creates exactly the table's roles (run under Node with a
recording stand-in for mongosh's `db`). The code: every collection a process
names is granted to someone, and the router reaches neither contacts nor tokens.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lapor.runtime import db_access
from lapor.runtime.db_access import GRANTS, OPERATOR, access_document, db_user, password_env

ROOT = Path(__file__).resolve().parents[2]
INIT_SCRIPT = ROOT / "ops" / "mongo" / "init-users.js"
PROCESSES = ("intake", "router", "sla", "notify", "dlq")


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (service.get("environment") or {}).items()}


def _compose(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())["services"]


def test_the_committed_access_file_is_the_table() -> None:
    assert db_access.ACCESS_JSON.read_text() == db_access.render_access(), (
        "run python -m lapor.runtime.db_access"
    )


@pytest.mark.parametrize("variant", ["docker-compose.yml", "docker-compose.scale.yml"])
def test_every_process_connects_as_its_own_user(variant: str) -> None:
    services = _compose(variant)
    for process in PROCESSES:
        # Not urlsplit: the `?` of `${VAR:?message}` would start the query.
        login = re.match(
            r"mongodb://([^:@]+):(\$\{[^}]+\})@", _environment(services[process])["MONGO_URL"]
        )
        assert login, process
        assert login[1] == db_user(process), process
        assert login[2] == f"${{{password_env(process)}:?see .env.example}}", process


def test_the_mongo_container_gets_every_password_the_init_script_reads() -> None:
    mongo = _compose("docker-compose.yml")["mongo"]
    env = _environment(mongo)
    document = access_document()
    wanted = {u["password_env"] for u in document["users"].values()}
    assert {*wanted, document["operator_password_env"]} <= set(env)
    mounts = dict(reversed(v.split(":")[:2]) for v in mongo["volumes"])
    assert mounts["/etc/lapor/db-access.json"] == "./ops/mongo/db-access.json"
    assert mounts["/docker-entrypoint-initdb.d/10-init-users.js"] == "./ops/mongo/init-users.js"


# mongosh's `db`, recording what the init script asks of it.
_HARNESS = """
const calls = [];
const database = (name) => ({
  getRole: () => null,
  getUser: () => null,
  createRole: (role) => calls.push({ call: "createRole", db: name, ...role }),
  createUser: (user) => calls.push({ call: "createUser", db: name, ...user }),
});
globalThis.db = { getSiblingDB: database };
globalThis.print = () => {};
require(process.argv[1]);
process.stdout.write(JSON.stringify(calls));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node to run the mongosh script")
def test_the_init_script_grants_exactly_the_tables_privileges() -> None:
    document = access_document()
    env = {"LAPOR_DB_ACCESS_FILE": str(db_access.ACCESS_JSON)}
    env |= {u["password_env"]: f"pw-{name}" for name, u in document["users"].items()}
    env[document["operator_password_env"]] = "pw-operator"
    out = subprocess.run(
        ["node", "-e", _HARNESS, str(INIT_SCRIPT)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    calls = json.loads(out.stdout)

    roles = {c["role"]: c for c in calls if c["call"] == "createRole"}
    assert set(roles) == {db_user(p) for p in GRANTS}
    for process in GRANTS:
        role = roles[db_user(process)]
        assert role["db"] == "lapor" and role["roles"] == []
        granted = {p["resource"]["collection"]: p["actions"] for p in role["privileges"]}
        assert all(p["resource"]["db"] == "lapor" for p in role["privileges"])
        assert granted == db_access.privileges(process), process

    users = {c["user"]: c for c in calls if c["call"] == "createUser"}
    assert set(users) == {db_user(p) for p in (*GRANTS, OPERATOR)}
    for process in GRANTS:
        user = users[db_user(process)]
        assert user["roles"] == [{"role": db_user(process), "db": "lapor"}]
        assert user["pwd"] == f"pw-{db_user(process)}" and user["db"] == "lapor"
    operator = users[db_user(OPERATOR)]
    assert operator["pwd"] == "pw-operator"
    assert operator["roles"] == [
        {"role": "readWrite", "db": "lapor"},
        {"role": "dbAdmin", "db": "lapor"},
    ]


def _collections_in_code() -> set[str]:
    """Collections named in the services' and the runtime's code: db["name"] and
    constants (COLLECTION, TOKENS_COLLECTION, NOTES)."""
    names: set[str] = set()
    for path in [*ROOT.glob("services/*/*.py"), *ROOT.glob("lapor/**/*.py")]:
        if path.name == "cli.py" or path == ROOT / "lapor" / "runtime" / "db_access.py":
            continue  # the operator's (it may touch anything), and the table itself
        text = path.read_text()
        names |= set(re.findall(r"\bdb\[\"(\w+)\"\]", text))
        names |= set(re.findall(r"^(?:\w*COLLECTION|NOTES) = \"(\w+)\"", text, re.M))
    return names


def test_every_collection_the_code_names_is_granted() -> None:
    granted = {c for grants in GRANTS.values() for c in grants}
    found = _collections_in_code()
    assert {"complaints", "notify_contacts", "api_tokens", "delivery_failures"} <= found
    assert found <= granted, found - granted


def test_the_router_reaches_neither_contacts_nor_tokens() -> None:
    router = db_access.privileges("router")
    assert "notify_contacts" not in router and "api_tokens" not in router
    # Token hashes: intake manages them; sla, notify, hotspots and the dead-letter
    # watcher's API only look them up.
    readers = {p for p, grants in GRANTS.items() if "find" in grants.get("api_tokens", ())}
    assert readers == {"intake", "sla", "notify", "hotspots", "dlq"}
    writers = {p for p, grants in GRANTS.items() if len(grants.get("api_tokens", ())) > 1}
    assert writers == {"intake"}
    readers = {p for p, grants in GRANTS.items() if "find" in grants.get("notify_contacts", ())}
    assert readers == {"notify"}
