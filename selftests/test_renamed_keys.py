"""Keys and names of an older embedgate are refused with one line that says the new ones: a thresholds file's
[family.NAME] (now [runtime.NAME]), a report.json of an older schema, a verdict table's old gate ids."""

from __future__ import annotations

import pytest

from embedgate import UsageError
from embedgate.thresholds import Scopes, load_thresholds

pytestmark = pytest.mark.fast

SCOPES = Scopes(["torch-fp32", "gguf-q8_0"], ["torch", "gguf"], ["stsb"])


@pytest.mark.parametrize(("text", "said"), [
    ("[family.gguf.contract]\nbatch_min_cosine = 0.998\n", "thresholds: [family.gguf] is now [runtime.gguf]"),
    ("[profile.p.family.gguf.contract]\nbatch_min_cosine = 0.998\n",
     "thresholds: [profile.p.family.gguf] is now [profile.p.runtime.gguf]"),
], ids=["family", "profile-family"])
def test_an_old_thresholds_scope_names_its_new_one(tmp_path, text, said):
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        load_thresholds(path, scopes=SCOPES)
    assert str(caught.value).startswith(said), caught.value
    assert "\n" not in str(caught.value)


def test_an_old_threshold_override_names_its_new_scope(tmp_path):
    path = tmp_path / "thresholds.toml"
    path.write_text("")
    with pytest.raises(UsageError, match=r"^thresholds: \[family.gguf\] is now \[runtime.gguf\]"):
        load_thresholds(path, ["family.gguf.contract.batch_min_cosine=0.99"], scopes=SCOPES)


def test_the_runtime_scope_applies(tmp_path):
    path = tmp_path / "thresholds.toml"
    path.write_text("[runtime.gguf.contract]\nbatch_min_cosine = 0.998\n")
    thresholds = load_thresholds(path, scopes=SCOPES)
    assert thresholds.for_backend("gguf-q8_0", "gguf")["contract"]["batch_min_cosine"] == 0.998
    assert "batch_min_cosine" not in thresholds.for_backend("torch-fp32", "torch")["contract"]
