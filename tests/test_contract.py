"""Contract tests: what every backend must do whatever its speed or quality.

Tolerances come from the thresholds file ([defaults.contract], per family or per backend), never from here.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedgate.model import ROLES
from embedgate.protocol import RAW_DTYPES, DeployedSettings, RawOutput

pytestmark = pytest.mark.contract

NORM_ATOL = 1e-3  # float32 unit vectors: anything further from 1 is not normalised
HYPOTHESIS = settings(max_examples=15, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

UNICODE_SAMPLES = {
    "cjk": ["机器学习模型在廉价的处理器上运行得很慢。", "東京は日本の首都です", "한국어 문장입니다"],
    "emoji": ["🙂", "deploy 🚀🚀🚀 now", "👩‍👩‍👧‍👦 family", "🇩🇪🇫🇷"],
    "right-to-left": ["مرحبا بالعالم", "שלום עולם", "mixed עברית and English"],
    "combining-marks": ["e\u0301\u0301\u0301", "Z\u0351\u0360\u0361a\u0315\u0327l\u0338g\u0336o", "\u0915\u094d\u0937"],
    "control-characters": ["\x00", "tab\tnew\nline\rreturn", "\x1b[31mred\x1b[0m", "\u200b\u200c\u200d\ufeff"],
}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def assert_valid(backend, vectors: np.ndarray, n: int, what: str) -> None:
    assert vectors.shape == (n, backend.dimension), f"{backend.name}: {what}: shape {vectors.shape}, expected {(n, backend.dimension)}"
    assert vectors.dtype == np.float32, f"{backend.name}: {what}: dtype {vectors.dtype}, expected float32"
    assert np.isfinite(vectors).all(), f"{backend.name}: {what}: NaN or inf in the output"
    norms = np.linalg.norm(vectors, axis=1)
    worst = float(np.max(np.abs(norms - 1.0))) if n else 0.0
    assert worst <= NORM_ATOL, f"{backend.name}: {what}: vector norms {norms.min():.4f}..{norms.max():.4f}, expected 1 ± {NORM_ATOL}"


def test_shape_and_dtype(backend, mixed_texts):
    vectors = backend.encode(mixed_texts, batch_size=4)
    assert_valid(backend, vectors, len(mixed_texts), "mixed texts")
    empty = backend.encode([])
    assert empty.shape == (0, backend.dimension), f"{backend.name}: encode([]) has shape {empty.shape}"
    if hasattr(backend, "encode_raw"):  # encode() casts to float32; the runtime's own dtype is the contract
        raw = backend.encode_raw(mixed_texts, batch_size=4)
        assert raw.dtype in RAW_DTYPES, (
            f"{backend.name}: the runtime returns {raw.dtype} vectors, expected float32 (encode() hides it with a cast)"
        )


def test_raw_output(backend, egsession, mixed_texts, hostile_texts):
    """The runtime's own output, before encode() normalises it: (n, dim) float32 (or float16: see RAW_DTYPES),
    finite, no zero row.

    encode() raises on NaN, inf and unexpected zero rows; this gate says which text, on texts that reach the
    limits (blank, punctuation only, past the max length, hostile)."""
    if not isinstance(backend, RawOutput):
        pytest.skip(f"{backend.name} does not expose its runtime's raw output (backends.RawOutput)")
    texts = mixed_texts + hostile_texts + ["", "0", "." * 50]
    raw = backend.encode_raw(texts, batch_size=4)
    dimension = backend.runtime_dimension  # full size under --truncate-dim
    assert isinstance(raw, np.ndarray), f"{backend.name}: the runtime returned {type(raw).__name__}, not an array"
    assert raw.shape == (len(texts), dimension), (
        f"{backend.name}: the runtime returned shape {raw.shape}, expected {(len(texts), dimension)}"
    )
    assert raw.dtype in RAW_DTYPES, f"{backend.name}: the runtime returns {raw.dtype} vectors, expected float32"
    bad = np.flatnonzero(~np.isfinite(raw).all(axis=1)).tolist()
    assert not bad, f"{backend.name}: NaN or inf in the runtime's vectors of texts {bad} (first {texts[bad[0]][:50]!r})"
    prompt = egsession.model.prompt_for(None)
    zero = [int(i) for i in np.flatnonzero(~raw.any(axis=1)) if not backend.embeds_nothing(prompt + texts[i])]
    assert not zero, f"{backend.name}: all-zero vectors from the runtime for texts {zero} ({texts[zero[0]][:40]!r})"


def test_deployed_settings(backend, egsession, gate):
    """The artifact's own settings (a GGUF's pooling and context length, an ONNX graph's output dimension, a static
    model's normalize flag) against the reference pipeline's: what a deployment of this artifact would do.

    The harness configures every backend from the reference model, so a file that says otherwise passes every
    other gate and then embeds differently in production. A setting the artifact leaves to its caller is None and
    not compared. A context longer than the reference's max length is not a difference: the caller truncates."""
    if not isinstance(backend, DeployedSettings):
        pytest.skip(f"{backend.name} does not expose its deployed settings (backends.DeployedSettings)")
    deployed, model = backend.deployed_settings(), egsession.model
    reference = {"pooling": model.pooling, "dimension": model.dimension, "normalize": model.normalize,
                 "max_tokens": model.max_seq_length}
    gate.detail(deployed=deployed, reference=reference)
    compared = ("normalize", "max_tokens")
    if egsession.registry[backend.name].shares_reference_space:  # a static model's pooling and space are its own
        compared = ("pooling", "dimension", *compared)
    differences = []
    for key in compared:
        ours, theirs = deployed.get(key), reference[key]
        if ours is None or (key == "max_tokens" and ours >= theirs):
            continue
        if ours != theirs:
            differences.append(DIFFERENCE[key].format(ours=ours, theirs=theirs))
    assert not differences, f"{backend.name}: " + "; ".join(differences)


DIFFERENCE = {
    "pooling": "the artifact's pooling is {ours}, the reference pipeline's is {theirs}",
    "dimension": "the artifact's vectors have {ours} dimensions, the reference pipeline's {theirs}",
    "normalize": "the artifact's normalize is {ours}, the reference pipeline's is {theirs}",
    "max_tokens": "max length {ours} vs {theirs} tokens",
}


def test_unit_norm(backend, mixed_texts):
    norms = np.linalg.norm(backend.encode(mixed_texts), axis=1)
    assert np.allclose(norms, 1.0, atol=NORM_ATOL), (
        f"{backend.name}: norms {np.round(norms, 4).tolist()} are not 1 ± {NORM_ATOL}"
    )


def test_finite(backend, mixed_texts):
    vectors = backend.encode(mixed_texts + ["", "0", "." * 50])
    bad = np.where(~np.isfinite(vectors).all(axis=1))[0].tolist()
    assert not bad, f"{backend.name}: NaN/inf in the vectors of texts {bad}"


def test_deterministic(backend, mixed_texts, thresholds):
    first = backend.encode(mixed_texts)
    second = backend.encode(mixed_texts)
    limit = thresholds["contract"]["repeat_max_abs_diff"]
    diff = float(np.max(np.abs(first - second)))
    assert diff <= limit, f"{backend.name}: two encodes of the same texts differ by {diff:.2e} > {limit:.0e}"


def test_batch_invariance(backend, mixed_texts, thresholds):
    batched = backend.encode(mixed_texts, batch_size=len(mixed_texts))
    alone = np.concatenate([backend.encode([text], batch_size=1) for text in mixed_texts])
    sims = cosines(batched, alone)
    limit = thresholds["contract"]["batch_min_cosine"]
    worst = int(np.argmin(sims))
    assert sims[worst] >= limit, (
        f"{backend.name}: text {worst} alone vs in a batch of {len(mixed_texts)}: cosine {sims[worst]:.6f} < {limit}"
    )


def test_order_invariance(backend, mixed_texts, thresholds):
    forward = backend.encode(mixed_texts, batch_size=len(mixed_texts))
    backward = backend.encode(mixed_texts[::-1], batch_size=len(mixed_texts))[::-1]
    sims = cosines(forward, backward)
    limit = thresholds["contract"]["order_min_cosine"]
    assert sims.min() >= limit, (
        f"{backend.name}: reordering the batch moved text {int(np.argmin(sims))} to cosine {sims.min():.6f} < {limit}")


@pytest.mark.parametrize("texts", [[""], [" "], ["\n\t  \r"], ["", "   ", "x"]], ids=["empty", "space", "whitespace", "mixed"])
def test_empty_and_whitespace(backend, texts):
    assert_valid(backend, backend.encode(texts), len(texts), f"blank input {texts!r}")


@pytest.mark.parametrize("script", list(UNICODE_SAMPLES))
def test_unicode(backend, script):
    texts = UNICODE_SAMPLES[script]
    assert_valid(backend, backend.encode(texts), len(texts), f"{script} texts")


@HYPOTHESIS
@given(texts=st.lists(st.text(min_size=0, max_size=80), min_size=1, max_size=4))
def test_generated_texts(backend, texts):
    assert_valid(backend, backend.encode(texts), len(texts), f"generated texts {texts!r}")


def test_beyond_max_length(backend, thresholds):
    words = max(4 * backend.max_tokens, 64)
    base = " ".join(f"token{i % 97}" for i in range(words))
    vectors = backend.encode([base, base + " and a different ending that lies far past the limit"], batch_size=1)
    assert_valid(backend, vectors, 2, f"texts of ~{words * 3} tokens (max {backend.max_tokens})")
    similarity = float(vectors[0] @ vectors[1])
    limit = thresholds["contract"]["batch_min_cosine"]
    assert similarity >= limit, (
        f"{backend.name}: texts that differ only past the {backend.max_tokens}-token limit have cosine "
        f"{similarity:.6f} < {limit}: the input is not truncated at the model's max length"
    )


@pytest.mark.parametrize("bad", [[1], ["ok", None], [b"bytes"], "a bare string", None, {"text": "x"}],
                         ids=["int", "none-item", "bytes", "bare-str", "none", "dict"])
def test_rejects_non_string(backend, bad):
    with pytest.raises(TypeError, match="encode"):
        backend.encode(bad)


def test_hostile_input(backend, hostile_texts):
    vectors = backend.encode(hostile_texts, batch_size=4)
    assert_valid(backend, vectors, len(hostile_texts), "hostile texts (URLs, hashes, special tokens, 100k chars)")


@pytest.mark.parametrize(("texts", "index", "position"), [(["\ud800"], 0, 0), (["ok", "fine", "abc\udfffdef"], 2, 3)],
                         ids=["alone", "third-text"])
def test_rejects_invalid_unicode(backend, texts, index, position):
    """A lone surrogate is not text any runtime can tokenize: one ValueError naming the text, in every backend."""
    with pytest.raises(ValueError, match=rf"encode\(\): text {index} is not valid Unicode .*at position {position}\)"):
        backend.encode(texts)


@pytest.mark.parametrize("role", [None, *ROLES], ids=lambda role: role or "no-role")
def test_roles(backend, egsession, role, mixed_texts):
    vectors = backend.encode(mixed_texts[:2], role=role)
    assert_valid(backend, vectors, 2, f"role {role}")
    model = egsession.model
    if role == "query" and model.prompt_for("query") != model.prompt_for("document"):
        documents = backend.encode(mixed_texts[:2], role="document")
        assert not np.allclose(vectors, documents), f"{backend.name}: query and document prompts differ but the vectors do not"
