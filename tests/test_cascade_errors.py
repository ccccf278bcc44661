"""Every hostile input to the cascade API is a named error whose message says what and how.

One parametrized test per class of input: labels, scores, parameters, thresholds files,
splits and report references.
"""

import json

import numpy as np
import pytest

from mrl.adaptive import Cascade, cascade_exits, evaluate_splits, holdout_splits
from mrl.adaptive import pairwise_thresholds as pairwise
from mrl.adaptive.report import Reference, cascade_report
from mrl.errors import (
    ConfigError,
    FormatError,
    InputError,
    MissingPathError,
    NotFittedError,
    PathError,
)
from mrl.nesting import Nesting

NESTING = Nesting((2, 4, 8))
RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(3, 40, 4))
LABELS = RNG.integers(0, 4, 40)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.r_[LABELS[:-1], 4], r"label 4 is out of range for 4 classes \(0\.\.3\)"),
        (np.r_[LABELS[:-1], -1], "label -1 is negative; class ids start at 0"),
        (LABELS.astype(np.float32), "must be integer class ids"),
        (LABELS[:-1], "labels have 39 entries but the scores hold 40 examples"),
        (LABELS[:, None], "must be a 1-D array of class ids"),
    ],
)
def test_bad_labels(labels, match):
    with pytest.raises(InputError, match=match):
        Cascade(NESTING).fit(LOGITS, labels)
    fitted = Cascade(NESTING).fit(LOGITS, LABELS)
    with pytest.raises(InputError, match=match):
        fitted.evaluate(LOGITS, labels)


def with_nan(x, size, row, value=np.nan):
    x = x.copy()
    x[size, row, 1] = value
    return x


@pytest.mark.parametrize(
    "scores, inputs, match",
    [
        (LOGITS[0], "logits", r"shape \[G, N, C\], got shape \(40, 4\)"),
        (LOGITS[:2], "logits", "scores have 2 sizes but the nesting"),
        (LOGITS[:, :0], "logits", r"no examples \(N = 0\)"),
        (LOGITS[:, :, :1], "logits", "needs C >= 2 classes"),
        (
            with_nan(LOGITS, 1, 7),
            "logits",
            "scores for size 4 contain NaN or inf; first bad row is 7",
        ),
        (with_nan(LOGITS, 2, 3, np.inf), "logits", "size 8 contain NaN or inf; first bad row is 3"),
        (LOGITS.astype(str), "logits", "must be a float array"),
        (softmax(LOGITS), "logits", "already probabilities.*pass inputs='probabilities'"),
        (LOGITS, "probabilities", "probabilities for size 2 must be >= 0 and sum to 1"),
    ],
)
def test_bad_scores(scores, inputs, match):
    labels = LABELS[: np.shape(scores)[1]] if np.ndim(scores) == 3 else LABELS
    with pytest.raises(InputError, match=match):
        Cascade(NESTING, inputs=inputs).fit(scores, labels)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(policy="greedy"), "policy must be one of pairwise, joint, shared, got 'greedy'"),
        (dict(cost="total"), "cost must be one of expected, cumulative"),
        (dict(inputs="probs"), "inputs must be one of logits, probabilities, got 'probs'"),
        (dict(cap=3), r"cap must be one of the nesting's sizes \[2, 4, 8\] or 'search', got 3"),
        (dict(cap="8"), r"cap must be one of the nesting's sizes .* got '8'"),
        (dict(cap=4.0), r"cap must be one of the nesting's sizes .* got 4\.0"),
        (dict(cap="search"), "cap='search' applies to policy='joint' or 'shared'"),
        (dict(policy="joint"), "needs exactly one of target, target_dim or budget, got none"),
        (dict(policy="joint", target=0.5, budget=4), "needs exactly one of .* got \\['target'"),
        (dict(target=0.5), "target applies to policy='joint' or 'shared', not 'pairwise'"),
        (dict(policy="joint", target=1.5), r"target \(an accuracy fraction\) must be .*\[0, 1\]"),
        (dict(policy="joint", target="0.9"), "target .* must be a number, got '0.9'"),
        (dict(policy="joint", target=float("nan")), "target .* must be a finite number"),
        (dict(policy="shared", target_dim=3), r"target_dim must be one of the nesting's sizes"),
        (dict(policy="joint", target_dim=8, tolerance=2), r"tolerance .* in \[-1, 1\], got 2"),
        (dict(tolerance="0.1"), "tolerance .* must be a number, got '0.1'"),
        (dict(policy="joint", budget=0), r"budget \(a cost in dims\) must be .*\(0, inf\]"),
        (dict(policy="joint", budget=-3.0), "budget .* got -3.0"),
        (dict(policy="joint", budget=1.0), "below the cheapest cascade .* at least 2"),
        (
            dict(policy="joint", target=0.5, grid=1),
            r"grid \(confidence quantiles .*\) must be >= 2",
        ),
        (dict(policy="joint", target=0.5, grid=2.5), "grid .* must be an int, got 2.5"),
        (dict(nesting=(2, 4, 8)), "nesting must be a Nesting, e.g. Nesting"),
    ],
)
def test_bad_parameters(params, match):
    params = {"nesting": NESTING, **params}
    with pytest.raises(ConfigError, match=match):
        Cascade(**params).fit(LOGITS, LABELS)


def test_unfitted_cascade_and_low_level_misuse():
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        Cascade(NESTING).predict(LOGITS)
    conf = np.full((3, 5), 0.5)
    with pytest.raises(InputError, match="at most K - 1 thresholds"):
        cascade_exits(conf, [0.1, 0.2, 0.3])
    correct = np.ones((3, 5), dtype=bool)
    with pytest.raises(ConfigError, match=r"thresholds in \[0, 1\]"):
        pairwise(conf, correct, grid=np.array([0.5, 2.0]))
    with pytest.raises(ConfigError, match="strictly ascending"):
        pairwise(conf, correct, grid=np.array([0.9, 0.5]))
    with pytest.raises(ConfigError, match="grid must be a non-empty 1-D array"):
        pairwise(conf, correct, grid="0.5")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A fitted joint cascade's file contents."""
    path = tmp_path_factory.mktemp("cascade") / "t.json"
    Cascade(NESTING, policy="joint", target_dim=8).fit(LOGITS, LABELS).save(path)
    return json.loads(path.read_text())


def edit(d, **changes):
    d = json.loads(json.dumps(d))
    for key, value in changes.items():
        *parents, last = key.split("__")
        target = d
        for p in parents:
            target = target[p]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return json.dumps(d)


@pytest.mark.parametrize(
    "contents, error, match",
    [
        (
            lambda d: "not json {",
            FormatError,
            r"t\.json is not a cascade thresholds file \(invalid or truncated JSON",
        ),
        (
            lambda d: json.dumps(d)[:40],
            FormatError,
            r"t\.json is not a cascade .* truncated JSON: Unterminated",
        ),
        (lambda d: b"\xff\xfe\x00garbage", FormatError, "not a cascade thresholds file"),
        (lambda d: "[1, 2]", FormatError, r"t\.json is not an mrl cascade thresholds file"),
        (lambda d: edit(d, format="mrl-index"), FormatError, "no 'mrl-cascade' format tag"),
        (lambda d: edit(d, version=2), FormatError, "format version 2; this mrl reads version 1"),
        (lambda d: edit(d, thresholds=KeyError), FormatError, r"missing the key\(s\) 'thresholds'"),
        (
            lambda d: edit(d, thresholds=[0.5]),
            FormatError,
            r"3 dims need 2 thresholds, got \[0.5\]",
        ),
        (lambda d: edit(d, thresholds=[0.5, 7]), FormatError, r"a threshold must be .* got 7"),
        (lambda d: edit(d, thresholds=[0.5, "x"]), FormatError, "a threshold must be a number"),
        (lambda d: edit(d, dims=[2, 8]), FormatError, r"dims \[2, 8\] are not the nesting's"),
        (lambda d: edit(d, params__policy="greedy"), FormatError, "damaged or was edited: policy"),
        (lambda d: edit(d, params__bogus=1), FormatError, "unexpected keyword argument 'bogus'"),
        (lambda d: edit(d, nesting__dims=[4, 2]), FormatError, "strictly increasing"),
        (lambda d: edit(d, holdout__accuracy=KeyError), FormatError, "holdout lacks accuracy"),
        (lambda d: edit(d, target_accuracy=3), FormatError, "target_accuracy must be"),
    ],
)
def test_bad_thresholds_file(tmp_path, saved, contents, error, match):
    path = tmp_path / "t.json"
    text = contents(saved)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(error, match=match):
        Cascade.load(path)


def test_thresholds_file_paths_and_nesting(tmp_path, saved):
    (tmp_path / "t.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match=r"was fitted for nesting \[2, 4, 8\], not \[4, 8, 16\]"):
        Cascade.load(tmp_path / "t.json", Nesting((4, 8, 16)))
    with pytest.raises(ConfigError, match="nesting must be a Nesting or None, got tuple"):
        Cascade.load(tmp_path / "t.json", (2, 4, 8))
    with pytest.raises(MissingPathError, match=r"nope\.json does not exist; fit and save one"):
        Cascade.load(tmp_path / "nope.json")
    with pytest.raises(PathError, match="is a folder; give a thresholds file"):
        Cascade.load(tmp_path)
    fitted = Cascade(NESTING).fit(LOGITS, LABELS)
    with pytest.raises(PathError, match="is a folder; give the thresholds file's path"):
        fitted.save(tmp_path)
    with pytest.raises(PathError, match=r"its parent .*t\.json is a file"):
        fitted.save(tmp_path / "t.json" / "u.json")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_splits=0), "n_splits must be >= 1, got 0"),
        (dict(n_splits=2.5), "n_splits must be an int"),
        (dict(holdout=1.5), r"holdout fraction must be in \(0, 1\), got 1.5"),
        (dict(holdout=0), r"holdout \(a count of examples\) must be >= 1, got 0"),
        (dict(holdout=True), "holdout .* must be an int, got True"),
        (dict(holdout=0.001), "the holdout is empty: 0.001 of 100 examples is 0"),
        (dict(holdout=100), r"the holdout \(100\) leaves no test examples out of 100"),
        (dict(seed=-1), "seed must be >= 0, got -1"),
    ],
)
def test_bad_splits(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        holdout_splits(100, **kwargs)


def test_bad_split_indices_and_reference():
    splits = holdout_splits(40, n_splits=1)
    with pytest.raises(InputError, match=r"split index 40 is outside 0\.\.39"):
        evaluate_splits(Cascade(NESTING), LOGITS, LABELS, [(np.array([0, 40]), np.array([1]))])
    with pytest.raises(InputError, match="reference must be .* bool"):
        evaluate_splits(Cascade(NESTING), LOGITS, LABELS, splits, reference=np.ones(39, bool))
    with pytest.raises(ConfigError, match="match_reference needs a reference"):
        evaluate_splits(Cascade(NESTING), LOGITS, LABELS, splits, match_reference=True)
    with pytest.raises(InputError, match=r"disagree: shapes \(3, 40, 4\) and \(39,\)"):
        evaluate_splits(Cascade(NESTING), LOGITS, LABELS[:-1], splits)
    with pytest.raises(ConfigError, match="cascade must be an unfitted Cascade, got dict"):
        evaluate_splits({}, LOGITS, LABELS, splits)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: Reference(None, 8, accuracy=0.5), ConfigError, "needs a name such as 'FF-256'"),
        (lambda: Reference("FF-8", 0, accuracy=0.5), ConfigError, "FF-8: dim must be >= 1"),
        (lambda: Reference("FF-8", 8, accuracy=91.0), ConfigError, r"accuracy .* in \[0, 1\]"),
        (lambda: Reference("FF-8", 8), ConfigError, "exactly one of correct or accuracy"),
        (lambda: Reference("FF-8", 8, correct=np.ones(3)), InputError, "must be \\[N\\] bool"),
        (
            lambda: cascade_report(LOGITS, LABELS, NESTING, [Reference("r", 8, np.ones(3, bool))]),
            InputError,
            "reference r has 3 results but the scores have 40 examples",
        ),
        (
            lambda: cascade_report(LOGITS[:1], LABELS, Nesting((8,))),
            ConfigError,
            "needs a Nesting of at least two sizes",
        ),
        (lambda: cascade_report(LOGITS, LABELS, NESTING, margin=5), ConfigError, "margin"),
        (lambda: cascade_report(LOGITS, LABELS, NESTING, n_splits=0), ConfigError, "n_splits"),
        (lambda: cascade_report(LOGITS, LABELS + 1, NESTING), InputError, "out of range"),
        (
            lambda: cascade_report(LOGITS, LABELS, NESTING, [Reference("MRL-8", 8, accuracy=0.5)]),
            ConfigError,
            "two references are named 'MRL-8' \\(the model's own largest size",
        ),
    ],
)
def test_bad_report_inputs(make, error, match):
    with pytest.raises(error, match=match):
        make()
