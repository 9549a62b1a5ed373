"""Self-tests of the harness: pytester runs the real suite against small, deliberately broken backends."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PROJECT = Path(__file__).resolve().parent.parent
PROMPTS = {"query": "query: ", "document": "passage: ", "STS": "similar: "}


def make_tiny_model(folder: Path, *, dense: bool = True, prompts: dict | None = None, seed: int = 0,
                    max_positions: int = 128, first_activation: str = "activation.Tanh",
                    outliers: bool = False) -> Path:
    """A random 2-layer BERT in the sentence-transformers layout (mean pooling, Dense, Normalize, prompts).

    It reuses all-MiniLM-L6-v2's tokenizer files so that tokenization is real; only the weights are tiny.
    `outliers` makes the encoder weigh as a trained one does: layers initialised at std 0.25 instead of 0.02 (at 0.02
    the residual stream is all embeddings and no quantization of the layers shows), and one weight in 32 of every
    Linear scaled by 8, as trained weights are heavy-tailed: a 4-bit block holding one rounds the others coarsely."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    _start_folder(folder)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_positions,
                        initializer_range=0.25 if outliers else 0.02)
    encoder = BertModel(config)
    if outliers:
        with torch.no_grad():
            for module in encoder.encoder.modules():
                if isinstance(module, torch.nn.Linear):
                    module.weight[torch.rand(module.weight.shape) < 1 / 32] *= 8.0
    encoder.save_pretrained(str(folder), safe_serialization=True)
    modules = _pooling(folder, 32)
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
    _finish_folder(folder, modules, 64, prompts if prompts is not None else PROMPTS)
    return folder


def _start_folder(folder: Path) -> None:
    """The model folder with all-MiniLM-L6-v2's tokenizer files: tokenization is real, only the weights are tiny."""
    from embedgate.model import default_model_path

    folder.mkdir(parents=True)
    source = default_model_path()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)


def _pooling(folder: Path, dimension: int, mode: str = "mean") -> list[dict]:
    """The Transformer and Pooling modules (modules.json's first two entries). Every mode key is written, the one
    chosen true, so that no default of sentence-transformers adds a second mode beside the chosen one."""
    from embedgate.model import POOLING_KEYS

    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": dimension, **{key: name == mode for key, name in POOLING_KEYS.items()}}))
    return [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]


def _finish_folder(folder: Path, modules: list[dict], max_seq_length: int, prompts: dict) -> None:
    """Normalize last, then modules.json and the sentence-transformers configs."""
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": "9_Normalize",
                    "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))


def make_tiny_gemma(folder: Path, *, window: int = 8, max_seq_length: int = 48) -> Path:
    """A random 2-layer Gemma3 text encoder (one sliding-window layer, one full; 3 query heads, 1 key/value head,
    bidirectional, as EmbeddingGemma) with mean pooling and Normalize: what exercises the banded-attention export
    and the RMSNorm fusion. all-MiniLM-L6-v2's tokenizer files, as for the tiny BERT."""
    import torch
    from transformers import Gemma3TextConfig, Gemma3TextModel

    torch.manual_seed(0)
    _start_folder(folder)
    config = Gemma3TextConfig(
        vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=3,
        num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, sliding_window=window,
        layer_types=["sliding_attention", "full_attention"], use_bidirectional_attention=True,
        max_position_embeddings=128, pad_token_id=0, bos_token_id=101, eos_token_id=102)
    Gemma3TextModel(config).save_pretrained(str(folder), safe_serialization=True)
    # save_pretrained writes the window as transformers applies it (8 // 2 + 1), which loads as 5 // 2 + 1:
    # write it back as a published config has it (EmbeddingGemma's says 512 and loads as 257)
    saved = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(saved, sliding_window=window)))
    _finish_folder(folder, _pooling(folder, 32), max_seq_length, PROMPTS)
    return folder


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fast: needs neither torch nor mteb nor a model: seconds in all (`make selftest-fast`)")


@pytest.fixture(scope="session")
def heavy_libraries() -> None:
    """pytester's in-process runs drop modules first imported inside them; `datasets` registers pyarrow extension
    types on import and cannot be imported twice in one process, and a dropped `llama_cpp` leaves its two module-level
    /dev/null files to the garbage collector (a ResourceWarning in whichever test runs then: an error under
    filterwarnings = error), and `onnx`'s nanobind extension aborts the process when imported a second time (a
    build in the test's own process after an in-process run). So the heavy libraries are imported once, in this
    process, before the first in-process run (not at import of this file: the fast tier never loads them)."""
    import datasets  # noqa: F401
    import mteb  # noqa: F401
    import onnx  # noqa: F401
    import sentence_transformers  # noqa: F401

    try:
        import llama_cpp  # noqa: F401
    except ImportError:  # the gguf extra is not installed: its self-tests skip
        pass


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, heavy_libraries) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def linear_head_model(tmp_path_factory) -> Path:
    """The tiny model with a linear Dense head, as EmbeddingGemma's: what a static student can fold in."""
    return make_tiny_model(tmp_path_factory.mktemp("models") / "linear-head", first_activation="linear.Identity")


@pytest.fixture(scope="session")
def artifact_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def project_warning_filters() -> list[str]:
    """pytest.ini's filterwarnings (`error` and the named third-party ignores): the suite under test gets the same."""
    import iniconfig

    return str(iniconfig.IniConfig(PROJECT / "pytest.ini")["pytest"]["filterwarnings"]).splitlines()


@pytest.fixture
def suite(pytester: pytest.Pytester, artifact_cache, heavy_libraries, monkeypatch):
    """A pytester folder holding the real gate tests, thresholds and data fixtures, with embedgate enabled."""
    shutil.copytree(PROJECT / "tests", pytester.path / "tests")
    shutil.copytree(PROJECT / "fixtures", pytester.path / "fixtures")
    pytester.makeini(
        "[pytest]\nembedgate = true\ntestpaths = tests\nfilterwarnings =\n"
        + "".join(f"    {line}\n" for line in project_warning_filters())
    )
    pytester.makeconftest("from selftests.broken_backends import pytest_embedgate_register_backends  # noqa: F401\n")
    return SuiteRunner(pytester, artifact_cache, monkeypatch)


class SuiteRunner:
    def __init__(self, pytester: pytest.Pytester, cache: Path, monkeypatch: pytest.MonkeyPatch):
        self.pytester = pytester
        self.cache = cache
        self.monkeypatch = monkeypatch

    def _args(self, args: tuple[str, ...]) -> tuple[str, ...]:
        return ("-p", "no:cacheprovider", f"--artifact-cache={self.cache}", f"--report-dir={self.pytester.path / 'reports'}",
                "--thresholds=" + str(self.pytester.path / "fixtures" / "thresholds.toml"), *args)

    def run(self, *args: str) -> pytest.RunResult:
        """The suite in this process (no second import of torch and mteb). pytester restores sys.modules and
        sys.path afterwards; os.environ, which the plugin writes (OMP_NUM_THREADS and friends, HF_HUB_OFFLINE), is
        restored here, so that no run leaks its settings into the next or into this process's children."""
        saved = dict(os.environ)
        try:
            return self.pytester.runpytest(*self._args(args))
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def run_in_subprocess(self, *args: str, timeout: float = 600) -> pytest.RunResult:
        """The suite in a fresh interpreter, for runs whose process-wide state must neither leak out nor come in:
        --threads sets torch's and the BLAS libraries' thread pools for the whole process (and a backend may leave
        threads spinning), which the next in-process run and the timings would inherit."""
        self.monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")])))
        return self.pytester.runpytest_subprocess(*self._args(args), timeout=timeout)

    def report(self) -> dict:
        return json.loads((self.pytester.path / "reports" / "report.json").read_text())

    def verdicts(self) -> dict[tuple[str, str], str]:
        """(backend, gate) -> pass / fail / error / skip, from the report the run wrote."""
        return {(t["backend"], t["gate"]): t["verdict"] for t in self.report()["tests"]}
