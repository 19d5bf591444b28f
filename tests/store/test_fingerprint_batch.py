"""``feature_fingerprints`` (planning's batch form) equals ``feature_fingerprint`` clip by clip,
for any clip values: stores fingerprinted one way must plan the same the other way."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from store.fingerprint import MODALITY_INPUTS, feature_fingerprint, feature_fingerprints

values = st.one_of(
    st.none(), st.text(max_size=30), st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(-10**6, 10**6),
    st.lists(st.fixed_dictionaries({"word": st.text(max_size=8), "start": st.floats(0, 100), "end": st.floats(0, 100)}),
             max_size=4),
)
clip = st.fixed_dictionaries({k: values for k in ("text", "words", "duration", "media_fingerprint", "start", "end")})
identity = st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=10), st.integers(), st.floats(0, 1)),
                           max_size=4)


@settings(max_examples=60, deadline=None)
@given(clips=st.lists(clip, max_size=6), ident=identity, modality=st.sampled_from(sorted(MODALITY_INPUTS)))
def test_batch_fingerprints_equal_the_per_clip_rule(clips: list[dict], ident: dict, modality: str) -> None:
    columns = {k: [c.get(k) for c in clips] for k in MODALITY_INPUTS[modality]}
    if not clips:
        columns = {k: [] for k in MODALITY_INPUTS[modality]}
    assert feature_fingerprints(columns, modality, ident) == [feature_fingerprint(c, modality, ident) for c in clips]


def test_canonical_json_of_known_values_is_unchanged() -> None:
    """Golden values: stores and views fingerprinted by earlier versions must plan the same now."""
    from store.fingerprint import hash_obj

    value = {"b": [1, "x", None, True, 2.0000001], "a": {"k": (1.5, "y")}}
    assert hash_obj(value) == "c30628dbae77387ebfe96393c3c6159f"
