"""The contract gates catch broken backends, and the reference passes them all."""

from __future__ import annotations

CONTRACT_RUN = ("-m", "contract", "--backends=torch-fp32,broken-norm,broken-batch,broken-empty,broken-truncation")


def test_broken_backends_fail_the_right_contract_gates(suite, tiny_model):
    result = suite.run(f"--model={tiny_model}", *CONTRACT_RUN)
    verdicts = suite.verdicts()
    assert result.ret == 1, f"a run with broken backends must exit 1, got {result.ret}"

    reference = {gate: verdict for (backend, gate), verdict in verdicts.items() if backend == "torch-fp32"}
    assert reference and set(reference.values()) == {"pass"}, f"the reference must pass every contract gate: {reference}"

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
