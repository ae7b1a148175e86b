"""The commands that open personal data take their keys the same way: a missing or
malformed key is a usage error naming LAPOR_PII_KEY, never a traceback."""

import pytest
import typer

from lapor.runtime.pii import PiiOpener, new_key
from tools.keys import Resealer
from tools.terminal import with_pii_keys


@pytest.mark.parametrize("make", [PiiOpener, Resealer])
@pytest.mark.parametrize(("key", "old_keys"), [("", ""), ("not-a-key", ""), ("", "x,y")])
def test_a_missing_or_malformed_key_is_a_usage_error(make: type, key: str, old_keys: str) -> None:
    with pytest.raises(typer.BadParameter) as refused:
        with_pii_keys(make, key, old_keys)
    assert refused.value.param_hint == "LAPOR_PII_KEY"


def test_the_key_and_the_retired_keys_reach_what_is_made() -> None:
    key, old = new_key(), new_key()
    made = with_pii_keys(Resealer, key, f" {old} ,")
    assert (made.key, made.old_keys) == (key, (old,))
