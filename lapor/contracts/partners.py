"""The partner systems that may submit complaints on the bus (WhatsApp bot, SP4N).

The one list of them: each partner gets its own NATS login `partner-<name>`
(password `LAPOR_NATS_PARTNER_<NAME>_PASSWORD`) that may publish on its own
subject `lapor.inbound.partner.<name>` only, and intake stores what arrives
there as `partner:<name>`, whatever the payload says. To add one: add it here,
run `python -m tools.devstack auth-conf`, and give its password to nats-server
(docker-compose files, .env).
"""

import re

# Lower-case letters and digits: a single subject token, an environment
# variable's part and a login name at once.
PARTNER_NAME = re.compile(r"[a-z][a-z0-9]{0,31}")

PARTNERS: tuple[str, ...] = ("whatsapp", "sp4n")


def partner_login(partner: str) -> str:
    """The NATS user of `partner`."""
    return f"partner-{partner}"


def partner_source(partner: str) -> str:
    """What a partner's complaints are stored under: the subject's word, not the payload's."""
    return f"partner:{partner}"
