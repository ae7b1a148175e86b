import pytest

from services.notify.retry import RetryAction, RetryPolicy, plan_retry

POLICY = RetryPolicy(
    base_s=2.0, factor=3.0, max_delay_s=600.0, max_attempts=7, inline_max_s=2.0, jitter=0.2
)


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    assert POLICY.schedule() == [2.0, 6.0, 18.0, 54.0, 162.0, 486.0]
    assert RetryPolicy(base_s=1, factor=2, max_delay_s=5, max_attempts=6).schedule() == [
        1,
        2,
        4,
        5,
        5,
    ]


def test_jitter_only_lengthens_and_stays_bounded() -> None:
    assert POLICY.delay_after(2, rand=0.0) == 6.0
    assert POLICY.delay_after(2, rand=0.999) == pytest.approx(6.0 * 1.1998)
    assert POLICY.delay_after(500) == 600.0  # no overflow on absurd attempt numbers


def test_short_waits_happen_in_the_handler() -> None:
    plan = plan_retry(POLICY, attempts=1, elapsed_s=0.1, send_timeout_s=5, last_chance=False)
    assert plan.action is RetryAction.NOW
    assert plan.delay_s == 2.0


def test_a_wait_that_would_outlast_the_ack_wait_goes_back_to_jetstream() -> None:
    # 4 s spent + 2 s wait + a 5 s send would exceed the 8 s budget.
    plan = plan_retry(POLICY, attempts=1, elapsed_s=4.0, send_timeout_s=5, last_chance=False)
    assert plan.action is RetryAction.REDELIVER
    assert plan.delay_s == 2.0


def test_long_waits_are_redeliveries() -> None:
    plan = plan_retry(POLICY, attempts=3, elapsed_s=0, send_timeout_s=1, last_chance=False)
    assert (plan.action, plan.delay_s) == (RetryAction.REDELIVER, 18.0)


def test_the_cap_ends_retrying() -> None:
    plan = plan_retry(POLICY, attempts=7, elapsed_s=0, send_timeout_s=1, last_chance=False)
    assert plan.action is RetryAction.GIVE_UP


def test_the_last_delivery_gives_up_instead_of_asking_for_another() -> None:
    plan = plan_retry(POLICY, attempts=3, elapsed_s=0, send_timeout_s=1, last_chance=True)
    assert plan.action is RetryAction.GIVE_UP
    # ... but still uses a short in-handler retry it can afford.
    plan = plan_retry(POLICY, attempts=1, elapsed_s=0, send_timeout_s=1, last_chance=True)
    assert plan.action is RetryAction.NOW


@pytest.mark.parametrize(
    "kwargs",
    [{"base_s": 0}, {"factor": 0.5}, {"max_attempts": 0}, {"max_delay_s": 1, "base_s": 2}],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
