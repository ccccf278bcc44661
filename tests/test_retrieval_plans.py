"""Search plans: the paper's schedules, validation messages, CLI spelling round trips."""

import numpy as np
import pytest

from mrl.errors import ConfigError
from mrl.retrieval.plans import Funnel, Rerank, SingleShot, check_plan, parse_plan


def test_paper_funnel_schedule():
    assert Funnel.halving(2048).steps == ((32, 200), (64, 100), (128, 50), (256, 25), (2048, 10))
    assert Funnel.halving(2048, shortlist_dim=32, shortlist=800).steps[0] == (64, 800)
    assert Funnel.halving(64, shortlist_dim=32).steps == ((64, 200),)
    assert Rerank(16, 2048, 200).steps == ((2048, 200),)
    assert SingleShot(64).steps == ()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Funnel(16, ((8, 100),)), r"dims must strictly increase .* got 16 then 8"),
        (lambda: Funnel(16, ((32, 100), (32, 50))), "got 32 then 32"),
        (lambda: Funnel(16, ((32, 100), (64, 200))), "candidate counts must not increase"),
        (lambda: Funnel(16, ()), "at least one"),
        (lambda: Funnel(16, ((16, 100), (16, 50))), "only the first rerank dim may equal D_s"),
        (lambda: Rerank(16, 8, 200), "got 16 then 8"),
        (lambda: Rerank(16, 32, 0), "Rerank.shortlist must be >= 1, got 0"),
        (lambda: SingleShot(0), "SingleShot.dim must be >= 1, got 0"),
        # float dims were truncated silently (Funnel(16, ((32.7, 100),)) searched at 32)
        (lambda: Funnel(16, ((32.7, 100),)), "Funnel step 0 dim must be an int, got 32.7"),
        (lambda: Funnel(16, ((32, 100), (64, 50.0))), "Funnel step 1 candidates must be an int"),
        (lambda: Funnel(16.0, ((32, 100),)), "Funnel.shortlist_dim must be an int, got 16.0"),
        (lambda: Funnel(16, (32, 100)), "Funnel step 0 must be a .dim, candidates. pair"),
        (lambda: Funnel(16, 32), "Funnel.steps must be a sequence of .dim, candidates. pairs"),
        (lambda: Rerank(16, 64.5, 200), "Rerank.rerank_dim must be an int, got 64.5"),
        (lambda: Rerank(16.0, 64, 200), "Rerank.shortlist_dim must be an int, got 16.0"),
        (lambda: SingleShot(8.0), "SingleShot.dim must be an int, got 8.0"),
        (lambda: SingleShot("8"), "SingleShot.dim must be an int, got '8'"),
        (lambda: SingleShot(8, exact="yes"), "SingleShot.exact must be True or False"),
    ],
)
def test_invalid_plans(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_numpy_values_are_accepted_as_python_ones():
    plan = Funnel(np.int64(16), np.array([[32, 100], [64, 50]]), exact=np.bool_(True))
    assert plan == Funnel(16, ((32, 100), (64, 50)), exact=True)
    assert type(plan.shortlist_dim) is int and type(plan.steps[0][0]) is int


def test_check_plan_against_index_and_k():
    check_plan(Funnel.halving(2048), 2048, 10)
    with pytest.raises(ValueError, match="uses dim 2048 but the index has only 768"):
        check_plan(Funnel.halving(2048), 768, 10)
    with pytest.raises(ValueError, match="shortlist of 5 is smaller than k=10"):
        check_plan(Rerank(16, 64, 5), 64, 10)


@pytest.mark.parametrize(
    "plan",
    [
        SingleShot(64),
        SingleShot(16, exact=False),
        Rerank(16, 2048, 200),
        Rerank(8, 64, 50, exact=True),
        Funnel(16, ((32, 200), (2048, 10))),
        Funnel(8, ((32, 100), (64, 20)), exact=True),
    ],
)
def test_parse_plan_round_trip(plan):
    assert parse_plan(str(plan), 2048) == plan


def test_a_first_rerank_at_d_s_re_scores_the_shortlist():
    """`rerank:DS:DS:N` (and a funnel opening at D_s) re-scores a shortlist found on 8-bit
    codes with the stored floats: the same dim, read exactly."""
    assert Rerank(16, 16, 50).steps == ((16, 50),)
    assert parse_plan("rerank:64:64:30", 64) == Rerank(64, 64, 30)
    assert Funnel(16, ((16, 100), (64, 20))).steps == ((16, 100), (64, 20))


def test_parse_plan_default_and_errors():
    assert parse_plan("funnel", 768, shortlist_dim=24) == Funnel.halving(768, 24)
    with pytest.raises(ValueError, match="cannot read plan 'rerank:16'"):
        parse_plan("rerank:16", 2048)
    with pytest.raises(ValueError, match="cannot read plan 'beam:3'"):
        parse_plan("beam:3", 2048)
    with pytest.raises(ValueError, match="dims must strictly increase"):
        parse_plan("funnel:16:8x100", 2048)
