"""Self-tests of the harness: pytester runs the real suite against small, deliberately broken backends."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

# pytester's in-process runs drop modules first imported inside them; `datasets` registers pyarrow extension
# types on import and cannot be imported twice in one process, so the heavy libraries are imported here, once.
import datasets  # noqa: E402,F401
import mteb  # noqa: E402,F401
import sentence_transformers  # noqa: E402,F401

PROJECT = Path(__file__).resolve().parent.parent
PROMPTS = {"query": "query: ", "document": "passage: ", "STS": "similar: "}


def make_tiny_model(folder: Path, *, dense: bool = True, prompts: dict | None = None, seed: int = 0,
                    max_positions: int = 128, first_activation: str = "activation.Tanh") -> Path:
    """A random 2-layer BERT in the sentence-transformers layout (mean pooling, Dense, Normalize, prompts).

    It reuses all-MiniLM-L6-v2's tokenizer files so that tokenization is real; only the weights are tiny."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    from embedgate.model import default_model_path

    torch.manual_seed(seed)
    folder.mkdir(parents=True)
    source = default_model_path()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_positions)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    if dense:  # two Dense layers, as EmbeddingGemma has: 32 -> 24 (tanh) -> 16 (identity)
        for index, (size_in, size_out, activation) in enumerate(
                [(32, 24, first_activation), (24, 16, "linear.Identity")], start=2):
            path = folder / f"{index}_Dense"
            path.mkdir()
            path.joinpath("config.json").write_text(json.dumps({
                "in_features": size_in, "out_features": size_out, "bias": True,
                "activation_function": f"torch.nn.modules.{activation}"}))
            save_file({"linear.weight": torch.randn(size_out, size_in) * 0.4, "linear.bias": torch.zeros(size_out)},
                      str(path / "model.safetensors"))
            modules.append({"idx": index, "name": str(index), "path": path.name, "type": "sentence_transformers.models.Dense"})
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": "9_Normalize",
                    "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts if prompts is not None else PROMPTS}))
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def linear_head_model(tmp_path_factory) -> Path:
    """The tiny model with a linear Dense head, as EmbeddingGemma's: what a static student can fold in."""
    return make_tiny_model(tmp_path_factory.mktemp("models") / "linear-head", first_activation="linear.Identity")


@pytest.fixture(scope="session")
def artifact_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def suite(pytester: pytest.Pytester, artifact_cache):
    """A pytester folder holding the real gate tests, thresholds and data fixtures, with embedgate enabled."""
    shutil.copytree(PROJECT / "tests", pytester.path / "tests")
    shutil.copytree(PROJECT / "fixtures", pytester.path / "fixtures")
    pytester.makeini(
        "[pytest]\nembedgate = true\ntestpaths = tests\n"
        "filterwarnings =\n    ignore::DeprecationWarning\n    ignore::FutureWarning\n"
    )
    pytester.makeconftest("from selftests.broken_backends import pytest_embedgate_register_backends  # noqa: F401\n")
    return SuiteRunner(pytester, artifact_cache)


class SuiteRunner:
    def __init__(self, pytester: pytest.Pytester, cache: Path):
        self.pytester = pytester
        self.cache = cache

    def run(self, *args: str) -> pytest.RunResult:
        report_dir = self.pytester.path / "reports"
        return self.pytester.runpytest(
            "-p", "no:cacheprovider", f"--artifact-cache={self.cache}", f"--report-dir={report_dir}",
            "--thresholds=" + str(self.pytester.path / "fixtures" / "thresholds.toml"), *args,
        )

    def report(self) -> dict:
        return json.loads((self.pytester.path / "reports" / "report.json").read_text())

    def verdicts(self) -> dict[tuple[str, str], str]:
        """(backend, gate) -> pass / fail / error / skip, from the report the run wrote."""
        return {(t["backend"], t["gate"]): t["verdict"] for t in self.report()["tests"]}
