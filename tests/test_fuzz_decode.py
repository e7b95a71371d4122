"""Fuzzing decode + preprocess: every input either becomes a model-ready tensor or is refused
with a reason (``InputError``); nothing else may escape, hang or crash.

A short, deterministic run (derandomized hypothesis) is part of every test run; the long
run is ``python tools/fuzz_decode.py --minutes 60`` (README: Fuzzing). Every input that ever
broke something lives in tests/corpus/decode/, named ``ok-*`` or ``refused-*`` by the
outcome it must keep.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzzing

SEEDS = fuzzing.seeds()
NAMES = sorted(SEEDS)
FUZZ = settings(max_examples=400, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def test_every_seed_decodes():
    assert {name: fuzzing.target(data) for name, data in SEEDS.items()} == {name: "ok" for name in SEEDS}


@FUZZ
@given(name=st.sampled_from(NAMES), rnd=st.randoms(use_true_random=False))
def test_random_mutations_are_decoded_or_refused(name, rnd):
    data = fuzzing.mutate(SEEDS[name], rnd, [SEEDS[n] for n in NAMES])
    assert fuzzing.target(data) == "ok" or fuzzing.target(data).startswith("refused: ")


@FUZZ
@given(name=st.sampled_from(NAMES), which=st.integers(0, 63),
       value=st.sampled_from(fuzzing.EXTREMES) | st.integers(0, 2**32 - 1))
def test_extreme_values_in_size_fields_are_decoded_or_refused(name, which, value):
    fields = fuzzing.size_fields(SEEDS[name])
    data = fuzzing.set_field(SEEDS[name], fields[which % len(fields)], value)
    outcome = fuzzing.target(data)
    assert outcome == "ok" or outcome.startswith("refused: ")


def test_the_mutator_reaches_the_size_fields():
    """Guard for the two tests above: each format's size fields are found, and mutating
    them changes the declared size, so the fuzz runs do exercise the bomb checks."""
    from edge_classify.runtime.images import formats

    for name, data in SEEDS.items():
        fields = fuzzing.size_fields(data)
        assert fields, name
        before = formats.read_header(data)
        changed = set()
        for f in fields:
            try:
                h = formats.read_header(fuzzing.set_field(data, f, 0x7FFF))
                changed.add((h.width, h.height) != (before.width, before.height))
            except formats.FormatError:
                changed.add(True)
        assert True in changed, name


CORPUS = sorted(fuzzing.CORPUS.iterdir())


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_regression_corpus(path):
    outcome = fuzzing.target(path.read_bytes())
    expected = path.name.split("-", 1)[0]
    assert expected in ("ok", "refused"), f"corpus files are named ok-* or refused-*: {path.name}"
    assert outcome.split(":")[0] == expected, outcome


def test_corpus_is_not_empty():
    assert len(CORPUS) >= 5 and any(p.name.startswith("refused-") for p in CORPUS)


def test_mutation_is_deterministic_for_a_seeded_random():
    a = fuzzing.mutate(SEEDS["png.png"], random.Random(5))
    b = fuzzing.mutate(SEEDS["png.png"], random.Random(5))
    assert a == b
