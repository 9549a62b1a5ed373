"""The contract gates catch broken backends, and the reference passes them all."""

from __future__ import annotations

import pytest

CONTRACT_RUN = ("-m", "contract", "--backends=torch-fp32,broken-norm,broken-batch,broken-empty,broken-truncation")


def test_broken_backends_fail_the_right_contract_gates(suite, tiny_model):
    result = suite.run(f"--model={tiny_model}", *CONTRACT_RUN)
    verdicts = suite.verdicts()
    assert result.ret == 1, f"a run with broken backends must exit 1, got {result.ret}"

    reference = {gate: verdict for (backend, gate), verdict in verdicts.items() if backend == "torch-fp32"}
    assert reference, f"the reference must pass every contract gate: {reference}"
    assert set(reference.values()) == {"pass"}, f"the reference must pass every contract gate: {reference}"

    expected_failures = {
        ("broken-norm", "contract/unit_norm"),
        ("broken-norm", "contract/shape_and_dtype"),
        ("broken-batch", "contract/batch_invariance"),
        ("broken-empty", "contract/empty_and_whitespace[empty]"),
        ("broken-truncation", "contract/beyond_max_length"),
    }
    for key in expected_failures:
        assert verdicts.get(key) == "fail", f"{key} should fail, got {verdicts.get(key)}"
    # each broken backend breaks one thing: its unrelated gates still pass
    for backend, gate in [("broken-norm", "contract/deterministic"), ("broken-batch", "contract/unit_norm"),
                          ("broken-empty", "contract/batch_invariance"), ("broken-truncation", "contract/unit_norm")]:
        assert verdicts[(backend, gate)] == "pass", f"{backend} should pass {gate}, got {verdicts[(backend, gate)]}"

    # a crash and a broken norm are reported with readable messages
    result.stdout.fnmatch_lines(["*test_empty_and_whitespace?broken-empty-empty?*", "E * IndexError: *empty text has no first token*"])
    result.stdout.fnmatch_lines(["*broken-norm: mixed texts: vector norms 3.0000..3.0000, expected 1*"])


RAW_RUN = ("-m", "contract", "-k", "raw_output or finite or shape_and_dtype or unit_norm or invalid_unicode",
           "--backends=torch-fp32,nan-long,float64,zero-short,broken-norm,broken-empty")


def test_raw_output_is_gated_before_normalisation(suite, tiny_model):
    """Backends whose `_embed` goes wrong behind the real BaseBackend.encode: NaN, float64, a zero row. Were
    encode() to turn NaN and zero rows into a unit basis vector and cast float64 away, every gate would pass."""
    result = suite.run(f"--model={tiny_model}", *RAW_RUN)
    assert result.ret == 1, f"a run with broken backends must exit 1, got {result.ret}"
    verdicts = suite.verdicts()
    messages = {(t["backend"], t["gate"]): t["message"] for t in suite.report()["tests"]}

    expected = {  # (backend, gate): what the failure message must say (text 4 of mixed_texts is the long one)
        ("nan-long", "contract/raw_output"): "nan-long: NaN or inf in the runtime's vectors of texts [4,",
        ("nan-long", "contract/finite"): "nan-long: NaN or inf in the runtime's vector of text 4",
        ("float64", "contract/shape_and_dtype"): "float64: the runtime returns float64 vectors, expected float32",
        ("float64", "contract/raw_output"): "float64: the runtime returns float64 vectors",
        ("zero-short", "contract/raw_output"): "zero-short: all-zero vectors from the runtime for texts [1,",
        ("zero-short", "contract/unit_norm"): "zero-short: the runtime returned an all-zero vector for text 1 ('ok')",
    }
    for key, text in expected.items():
        assert verdicts.get(key) == "fail", f"{key} should fail, got {verdicts.get(key)}: {messages.get(key)}"
        assert text in messages[key], f"{key}: {messages[key]!r} does not say {text!r}"
    for key in [("float64", "contract/finite"), ("float64", "contract/unit_norm")]:
        assert verdicts[key] == "pass", f"{key}: a float64 output fails only the dtype gates, got {verdicts[key]}"
    reference = {gate: v for (backend, gate), v in verdicts.items() if backend == "torch-fp32"}
    assert set(reference.values()) == {"pass"}, f"the reference passes the raw-output gates: {reference}"

    # a lone surrogate is the same ValueError naming the text in every backend, wrapped ones included
    for backend in ("torch-fp32", "nan-long", "float64", "zero-short", "broken-norm", "broken-empty"):
        for case in ("alone", "third-text"):
            key = (backend, f"contract/rejects_invalid_unicode[{case}]")
            assert verdicts[key] == "pass", f"{key}: {verdicts[key]} {messages[key]}"
    assert verdicts[("broken-norm", "contract/raw_output")] == "skip", "a backend without encode_raw is skipped"


@pytest.mark.fast
def test_many_texts_are_batched_by_length_and_returned_in_order():
    """encode() of more texts than one batch runs them in batches of similar length; each vector comes back at its
    own text's position, and no batch mixes short and long texts (what the sorting is for)."""
    from types import SimpleNamespace

    import numpy as np

    from backends import BackendMetadata
    from backends._base import BaseBackend

    class Recording(BaseBackend):
        batches: list[list[str]] = []

        def _embed(self, texts):
            self.batches.append(list(texts))
            return np.array([[len(t), sum(map(ord, t)) % 97 + 1.0, 1.0] for t in texts], dtype=np.float32)

    model = SimpleNamespace(max_seq_length=128, prompt_for=lambda role: "", pooling="mean", normalize=True)
    backend = Recording("recording", model, 3, BackendMetadata("-", 0, 0.0))
    texts = [("word " * (i % 9 + 1)) + str(i) for i in range(40)]
    together = backend.encode(texts, batch_size=4)
    alone = np.concatenate([backend.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, err_msg="a vector came back at another text's position")
    sorted_batches = backend.batches[:10]
    assert len(sorted_batches) == 10, backend.batches
    for batch in sorted_batches:
        lengths = [len(t) for t in batch]
        assert max(lengths) - min(lengths) <= 6, f"a batch mixes lengths {lengths}"
