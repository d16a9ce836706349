"""specdec through its C ABI with ctypes: the parts of include/specdec.h the peer benchmarks use
(scripts/peer_bench.py against onnxruntime-genai, scripts/peer_llamacpp.py against llama.cpp).
No third-party imports, so either script's virtualenv can load it."""

from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class SpecdecStats(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("target_calls", ctypes.c_uint64),
        ("draft_calls", ctypes.c_uint64),
        ("rounds", ctypes.c_uint64),
        ("drafted", ctypes.c_uint64),
        ("accepted", ctypes.c_uint64),
        ("new_tokens", ctypes.c_uint64),
        ("acceptance_rate", ctypes.c_double),
        ("tokens_per_target_call", ctypes.c_double),
        ("draft_seconds", ctypes.c_double),
        ("target_seconds", ctypes.c_double),
        ("other_seconds", ctypes.c_double),
        ("total_seconds", ctypes.c_double),
        # Since 0.2: rounds that ended in a rejection, and accepted / (accepted + rejected).
        ("rejected", ctypes.c_uint64),
        ("alpha", ctypes.c_double),
    ]


class SpecdecError(RuntimeError):
    pass


class Specdec:
    """The parts of include/specdec.h this benchmark uses."""

    def __init__(self, lib_path: Path, ort_path: str | None, work_dir: Path):
        # Load a private copy: `make build` may rewrite target/release/libspecdec.so while a
        # benchmark runs, and a shared object rewritten under a running process can crash it.
        digest = sha256(lib_path)
        work_dir.mkdir(parents=True, exist_ok=True)
        copy = work_dir / f"libspecdec-{digest[:12]}.so"
        if not copy.exists():
            for old in work_dir.glob("libspecdec-*.so"):
                old.unlink()
            shutil.copy2(lib_path, copy)
        self.lib_path, self.lib_sha256 = str(lib_path), digest
        L = self.L = ctypes.CDLL(str(copy))
        P, E = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
        u32, sz = ctypes.c_uint32, ctypes.c_size_t
        sigs = {
            "specdec_version": ([], ctypes.c_char_p),
            "specdec_abi_version": ([], u32),
            "specdec_runtime_init": ([ctypes.c_char_p, E], u32),
            "specdec_error_code": ([P], u32),
            "specdec_error_message": ([P], ctypes.c_char_p),
            "specdec_error_free": ([P], None),
            "specdec_status_name": ([u32], ctypes.c_char_p),
            "specdec_model_options_new": ([], P),
            "specdec_model_options_free": ([P], None),
            "specdec_model_options_set_intra_threads": ([P, u32, E], u32),
            "specdec_model_load": ([ctypes.c_char_p, P, E, E], u32),
            "specdec_model_free": ([P], None),
            "specdec_model_vocab_size": ([P], sz),
            "specdec_tokenizer_load": ([ctypes.c_char_p, E, E], u32),
            "specdec_tokenizer_free": ([P], None),
            "specdec_tokenizer_encode": ([P, ctypes.c_char_p, sz, ctypes.POINTER(u32), sz,
                                          ctypes.POINTER(sz), E], u32),
            "specdec_gen_config_new": ([], P),
            "specdec_gen_config_free": ([P], None),
            "specdec_gen_config_set_gamma": ([P, u32, E], u32),
            "specdec_gen_config_set_temperature": ([P, ctypes.c_float, E], u32),
            "specdec_gen_config_set_top_p": ([P, ctypes.c_float, E], u32),
            "specdec_gen_config_set_seed": ([P, ctypes.c_uint64, E], u32),
            "specdec_gen_config_set_max_new_tokens": ([P, u32, E], u32),
            "specdec_gen_config_set_eos_ids": ([P, ctypes.POINTER(u32), sz, E], u32),
            "specdec_generator_new": ([P, P, P, E, E], u32),
            "specdec_generator_free": ([P], None),
            "specdec_generator_append_tokens": ([P, ctypes.POINTER(u32), sz, E], u32),
            "specdec_generator_generate": ([P, P, P, ctypes.POINTER(u32), E], u32),
            "specdec_generator_tokens": ([P, ctypes.POINTER(ctypes.POINTER(u32)),
                                          ctypes.POINTER(sz), E], u32),
            "specdec_generator_stats": ([P, ctypes.POINTER(SpecdecStats), E], u32),
        }
        for name, (args, res) in sigs.items():
            fn = getattr(L, name)
            fn.argtypes, fn.restype = args, res
        self.version = L.specdec_version().decode()
        self.policy_setter = self._find_policy_setter()
        self.call("specdec_runtime_init", ort_path.encode() if ort_path else None)
        self.ort_path = ort_path

    # -- gamma policies (added to the library while this script was written) --
    def _find_policy_setter(self):
        """specdec_gen_config_set_gamma_policy (or set_draft_policy), if exported. Its second
        argument's C type is read from include/specdec.h: a string, or an integer/enum."""
        header = (ROOT / "include" / "specdec.h")
        text = header.read_text() if header.exists() else ""
        for name in ("specdec_gen_config_set_gamma_policy", "specdec_gen_config_set_draft_policy"):
            if not hasattr(self.L, name):
                continue
            m = re.search(re.escape(name) + r"\s*\(([^)]*)\)", text, re.S)
            params = [p.strip() for p in m.group(1).split(",")] if m else []
            fn = getattr(self.L, name)
            fn.restype = ctypes.c_uint32
            E = ctypes.POINTER(ctypes.c_void_p)
            if len(params) >= 2 and "char" in params[1]:
                fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, E]
                return name, fn, "string", self._enum_values(text)
            fn.argtypes = [ctypes.c_void_p, ctypes.c_uint32, E]
            return name, fn, "enum", self._enum_values(text)
        return None

    @staticmethod
    def _enum_values(text: str) -> dict:
        vals = {}
        for m in re.finditer(r"SPECDEC_(?:GAMMA|DRAFT)_POLICY_([A-Z_]+)\s*=\s*(\d+)", text):
            vals[m.group(1).lower()] = int(m.group(2))
        return vals

    def policies(self) -> list[str]:
        """The non-fixed policies the library accepts (probed on a scratch config)."""
        if not self.policy_setter:
            return []
        _, _, kind, vals = self.policy_setter
        found = []
        for p in ("auto", "heuristic"):
            if kind == "enum" and p not in vals:
                continue
            cfg = self.L.specdec_gen_config_new()
            try:
                self.set_policy(cfg, p)
                found.append(p)
            except SpecdecError:
                pass
            finally:
                self.L.specdec_gen_config_free(cfg)
        return found

    def set_policy(self, cfg, policy: str) -> None:
        name, fn, kind, vals = self.policy_setter
        arg = policy.encode() if kind == "string" else vals[policy]
        err = ctypes.c_void_p()
        self.check(fn(cfg, arg, ctypes.byref(err)), err, name)

    # -- errors --
    def check(self, status: int, err: ctypes.c_void_p, what: str) -> None:
        if status == 0:
            return
        msg = ""
        if err.value:
            msg = (self.L.specdec_error_message(err) or b"").decode(errors="replace")
            self.L.specdec_error_free(err)
        name = self.L.specdec_status_name(status).decode()
        raise SpecdecError(f"{what}: {name}: {msg}")

    def call(self, name: str, *args):
        err = ctypes.c_void_p()
        self.check(getattr(self.L, name)(*args, ctypes.byref(err)), err, name)

    # -- models and tokenizer --
    def load_model(self, path: Path, threads: int):
        opts = self.L.specdec_model_options_new()
        try:
            self.call("specdec_model_options_set_intra_threads", opts, threads)
            out = ctypes.c_void_p()
            self.call("specdec_model_load", str(path).encode(), opts, ctypes.byref(out))
            return out
        finally:
            self.L.specdec_model_options_free(opts)

    def encode(self, tokenizer_path: Path, text: str) -> list[int]:
        tok = ctypes.c_void_p()
        self.call("specdec_tokenizer_load", str(tokenizer_path).encode(), ctypes.byref(tok))
        try:
            raw = text.encode()
            n = ctypes.c_size_t()
            err = ctypes.c_void_p()
            st = self.L.specdec_tokenizer_encode(tok, raw, len(raw), None, 0, ctypes.byref(n),
                                                 ctypes.byref(err))
            if st not in (0, 7013):  # 7013: BUFFER_TOO_SMALL, the size query
                self.check(st, err, "specdec_tokenizer_encode")
            elif err.value:
                self.L.specdec_error_free(err)
            buf = (ctypes.c_uint32 * max(n.value, 1))()
            self.call("specdec_tokenizer_encode", tok, raw, len(raw), buf, n.value, ctypes.byref(n))
            return list(buf[: n.value])
        finally:
            self.L.specdec_tokenizer_free(tok)

    # -- one generation --
    def generate(self, target, draft, ids: list[int], new_tokens: int, temperature: float,
                 seed: int, gamma: int | None, policy: str | None, top_p: float = 1.0) -> dict:
        cfg = self.L.specdec_gen_config_new()
        gen = ctypes.c_void_p()
        try:
            self.call("specdec_gen_config_set_max_new_tokens", cfg, new_tokens)
            self.call("specdec_gen_config_set_eos_ids", cfg, None, 0)
            self.call("specdec_gen_config_set_temperature", cfg, ctypes.c_float(temperature))
            self.call("specdec_gen_config_set_seed", cfg, seed)
            if temperature > 0 and top_p < 1.0:
                self.call("specdec_gen_config_set_top_p", cfg, ctypes.c_float(top_p))
            if gamma:
                self.call("specdec_gen_config_set_gamma", cfg, gamma)
            if policy:
                self.set_policy(cfg, policy)
            arr = (ctypes.c_uint32 * len(ids))(*ids)
            reason = ctypes.c_uint32()
            t0 = time.perf_counter()
            self.call("specdec_generator_new", target, draft, cfg, ctypes.byref(gen))
            self.call("specdec_generator_append_tokens", gen, arr, len(ids))
            self.call("specdec_generator_generate", gen, None, None, ctypes.byref(reason))
            seconds = time.perf_counter() - t0
            ptr, n = ctypes.POINTER(ctypes.c_uint32)(), ctypes.c_size_t()
            self.call("specdec_generator_tokens", gen, ctypes.byref(ptr), ctypes.byref(n))
            tokens = list(ptr[len(ids): n.value])
            st = SpecdecStats()
            st.struct_size = ctypes.sizeof(SpecdecStats)
            self.call("specdec_generator_stats", gen, ctypes.byref(st))
            stats = {f: getattr(st, f) for f, _ in SpecdecStats._fields_ if f != "struct_size"}
            if st.struct_size < ctypes.sizeof(SpecdecStats):  # a 0.1 library: no rejected/alpha
                stats["rejected"] = stats["alpha"] = None
            return {"tokens": tokens, "seconds": seconds, "stats": stats}
        finally:
            self.L.specdec_generator_free(gen)
            self.L.specdec_gen_config_free(cfg)
