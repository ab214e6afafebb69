"""The backprop exercises (numpy_gpt/exercises): a right answer passes, each planted mistake
gets its diagnosis, a broken file gets one line, and `start` keeps the learner's work."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

import numpy_gpt
from numpy_gpt.cli import main as cli
from numpy_gpt.exercises import ORDER, ExerciseError, check, exercise_source, hint, start

# The reference itself, written into the learner's file: the package's own backward
# overrides the stub. GELU's reference cache is internal, so it is rebuilt from x.
REFERENCE = {
    "linear": "from numpy_gpt.nn.layers.linear import linear_backward",
    "layernorm": "from numpy_gpt.nn.layers.layernorm import layernorm_backward",
    "gelu": """
        from numpy_gpt.nn.layers.gelu import gelu_tanh_backward as _ref, gelu_tanh_forward as _fwd
        def gelu_tanh_backward(dout, cache):
            return _ref(dout, _fwd(cache.x)[1])
        """,
    "cross_entropy": "from numpy_gpt.nn.layers.loss import cross_entropy_backward",
    "attention": "from numpy_gpt.nn.layers.attention import attention_backward",
    "embedding": "from numpy_gpt.nn.layers.embedding import embedding_backward",
    "dropout": "from numpy_gpt.nn.layers.dropout import dropout_backward",
    "residual": "from numpy_gpt.exercises.catalog import residual_backward",
    "model": """
        def gpt_backward(cache):
            g = {}
            dx, dhead, _ = linear_backward(cross_entropy_backward(cache.loss), cache.lm_head)
            dx, g["transformer.ln_f.weight"], g["transformer.ln_f.bias"] = (
                layernorm_backward(dx, cache.ln_f))
            for i in reversed(range(len(cache.blocks))):
                c, h = cache.blocks[i], f"transformer.h.{i}."
                dm, g[h + "mlp.c_proj.weight"], g[h + "mlp.c_proj.bias"] = (
                    linear_backward(dx, c.mlp_proj))
                dm = gelu_tanh_backward(dm, c.gelu)
                dm, g[h + "mlp.c_fc.weight"], g[h + "mlp.c_fc.bias"] = linear_backward(dm, c.c_fc)
                dm, g[h + "ln_2.weight"], g[h + "ln_2.bias"] = layernorm_backward(dm, c.ln_2)
                dx = dx + dm
                da, g[h + "attn.c_proj.weight"], g[h + "attn.c_proj.bias"] = (
                    linear_backward(dx, c.attn_proj))
                da = attention_backward(da, c.attn)
                da, g[h + "attn.c_attn.weight"], g[h + "attn.c_attn.bias"] = (
                    linear_backward(da, c.c_attn))
                da, g[h + "ln_1.weight"], g[h + "ln_1.bias"] = layernorm_backward(da, c.ln_1)
                dx = dx + da
            dwte, g["transformer.wpe.weight"] = embedding_backward(dx, cache.emb)
            g["transformer.wte.weight"] = dwte + dhead{tied}
            return g
        """,
    "rmsnorm": "from numpy_gpt.nn.layers.rmsnorm import rmsnorm_backward",
    "rope": "from numpy_gpt.nn.layers.rope import rope_backward",
    "swiglu": "from numpy_gpt.nn.layers.swiglu import swiglu_backward",
    "gqa": "from numpy_gpt.nn.layers.attention import attention_backward as gqa_backward",
    "llama": """
        def llama_backward(cache):
            g = {}
            dx, g["lm_head.weight"], _ = linear_backward(cross_entropy_backward(cache.loss),
                                                         cache.lm_head)
            dx, g["transformer.ln_f.weight"] = rmsnorm_backward(dx, cache.ln_f)
            NH, KV = cache.n_head, cache.n_kv_head
            for i in reversed(range(len(cache.blocks))):
                c, h = cache.blocks[i], f"transformer.h.{i}."
                dm, g[h + "mlp.c_proj.weight"], _ = linear_backward(dx, c.mlp_proj)
                dg, du = swiglu_backward(dm, c.swiglu)
                dm, g[h + "mlp.c_fc.weight"], _ = linear_backward(du, c.c_fc)
                dmg, g[h + "mlp.c_gate.weight"], _ = linear_backward(dg, c.c_gate)
                dm, g[h + "ln_2.weight"] = rmsnorm_backward(dm{gate}, c.ln_2)
                dx = dx + dm
                da, g[h + "attn.c_proj.weight"], _ = linear_backward(dx, c.attn_proj)
                da = gqa_backward(da, c.attn)
                B, T, D = da.shape
                hs = D // (NH + 2 * KV)
                QK = (NH + KV) * hs
                dqk = {rope}(da[..., :QK].reshape(B, T, NH + KV, hs), c.rope)
                da = np.concatenate([dqk.reshape(B, T, QK), da[..., QK:]], axis=-1)
                da, g[h + "attn.c_attn.weight"], _ = linear_backward(da, c.c_attn)
                da, g[h + "ln_1.weight"] = rmsnorm_backward(da, c.ln_1)
                dx = dx + da
            dwte, _ = embedding_backward(dx, cache.emb)
            g["transformer.wte.weight"] = dwte{head}
            return g
        """,
}
# the llama solution's right pieces; a test swaps one for a planted mistake
LLAMA_RIGHT = {"{gate}": " + dmg", "{rope}": "rope_backward", "{head}": ""}


def write(folder, name: str, code: str) -> None:
    """The starting file with `code` appended (a later def replaces the stub)."""
    start(name, folder, force=True)
    path = folder / f"{name}.py"
    path.write_text(path.read_text() + "\n" + textwrap.dedent(code).strip() + "\n")


def solved_folder(folder, model_tied: str = "", llama: dict | None = None) -> None:
    changes = {"{tied}": model_tied, **LLAMA_RIGHT, **(llama or {})}
    for name in ORDER:
        code = REFERENCE[name]
        for key, value in changes.items():
            code = code.replace(key, value)
        write(folder, name, code)


def test_the_reference_passes_every_exercise(tmp_path):
    solved_folder(tmp_path)
    for name in ORDER:
        report, progress = check(name, tmp_path)
        assert report.passed, (name, [(g.name, g.diagnosis) for g in report.grads])
        assert all(g.err_fd < 1e-6 for g in report.grads)
    assert all(progress[n] == "passed" for n in ORDER)


ATTN_HEAD = """
    def attention_backward(dout, cache):
        q, k, v, P, mask, scale, drop_scale = cache
        B, NH, T, hs = q.shape
        dy = dout.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
        dv = P.swapaxes(-1, -2) @ dy
        dP = dy @ v.swapaxes(-1, -2)
        dS = P * (dP - (dP * P).sum(-1, keepdims=True))
        dq, dk = dS @ k * scale, dS.swapaxes(-1, -2) @ q * scale
    """
ATTN_TAIL = """
        m = lambda z: z.transpose(0, 2, 1, 3).reshape(B, T, NH * hs)
        return np.concatenate([m(dq), m(dk), m(dv)], axis=-1)
    """


def attn(change: str) -> str:
    return ATTN_HEAD.rstrip(" ") + textwrap.indent(textwrap.dedent(change), " " * 8) + ATTN_TAIL


GQA_HEAD = """
    def gqa_backward(dout, cache):
        q, k, v, P, mask, scale, drop_scale = cache
        B, NH, T, hs = q.shape
        KV = k.shape[1]
        G = NH // KV
        kr, vr = np.repeat(k, G, 1), np.repeat(v, G, 1)
        dy = dout.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
        dP = dy @ vr.swapaxes(-1, -2)
        dS = P * (dP - (dP * P).sum(-1, keepdims=True))
        dq = dS @ kr * scale
        dk, dv = dS.swapaxes(-1, -2) @ q * scale, P.swapaxes(-1, -2) @ dy  # per query head
    """
GQA_TAIL = """
        m = lambda z: z.transpose(0, 2, 1, 3).reshape(B, T, -1)
        return np.concatenate([m(dq), m(dk), m(dv)], axis=-1)
    """


def gqa(reduce_line: str) -> str:
    """A gqa_backward that reduces the per-query-head dk, dv to the K/V heads by reduce_line."""
    return (GQA_HEAD.rstrip(" ") + textwrap.indent(textwrap.dedent(reduce_line), " " * 8)
            + "\n" + GQA_TAIL)


def lin(returned: str) -> str:
    """A linear_backward whose return line is `returned` (d2: dout, x2: x, as (N, .) rows)."""
    return ("def linear_backward(dout, cache):\n    x, w, has_bias = cache\n"
            "    d2, x2 = dout.reshape(-1, w.shape[0]), x.reshape(-1, w.shape[1])\n"
            f"    return {returned}")


# (exercise, the learner's backward, the gradient, what the diagnosis must say)
MISTAKES = [
    ("linear", lin("(d2 @ w).reshape(x.shape), x2.T @ d2, d2.sum(0) if has_bias else None"),
     "dw", "transposed"),
    ("linear", lin("(d2 @ w).reshape(x.shape), d2.T @ x2, dout if has_bias else None"),
     "db", "missing the sum over B=2, T=3"),
    ("linear", lin("(d2 @ w).reshape(x.shape), d2.T @ x2 / len(d2), d2.sum(0) if has_bias "
                   "else None"),
     "dw", "constant factor 0.1667 = 1/N"),
    ("linear", lin("-(d2 @ w).reshape(x.shape), d2.T @ x2, d2.sum(0) if has_bias else None"),
     "dx", "wrong sign"),
    ("linear", lin("(d2 @ w).reshape(x.shape), d2.T @ x2, d2[0] if has_bias else None"),
     "db", "db from the first row only"),
    ("linear", lin("(d2 @ w).reshape(x.shape), d2.T @ x2, np.ones(3) if has_bias else None"),
     "db", "wrong shape (T=3,), expected (out=5,)"),
    ("layernorm", """
        def layernorm_backward(dout, cache):
            n, rstd, w, has_bias = cache
            g = dout * w
            dx = rstd * (g - g.mean(-1, keepdims=True))
            return dx, (dout * n).sum((0, 1)), dout.sum((0, 1))
        """, "dx", "misses the path through the variance"),
    ("layernorm", """
        def layernorm_backward(dout, cache):
            n, rstd, w, has_bias = cache
            g = dout * w
            m = lambda z: z.mean(-1, keepdims=True)
            return rstd * (g - m(g) - n * m(g * n)), 2 * (dout * n).sum((0, 1)), dout.sum((0, 1))
        """, "dw", "constant factor 2 = 2"),
    ("gelu", """
        def gelu_tanh_backward(dout, cache):
            x, t = cache
            return dout * 0.5 * (1 + t)
        """, "dx", "x also reaches y through t"),
    ("cross_entropy", """
        def cross_entropy_backward(cache, dloss=1.0):
            probs, targets, valid, n_valid, eps, shape = cache
            d = probs.copy()
            rows = np.flatnonzero(valid)
            d[rows, targets[rows]] -= 1
            d[~valid] = 0
            return (d * dloss / len(targets)).reshape(shape)
        """, "dlogits", "N_valid/N"),
    ("cross_entropy", """
        def cross_entropy_backward(cache, dloss=1.0):
            probs, targets, valid, n_valid, eps, shape = cache
            d = probs.copy()
            rows = np.flatnonzero(valid)
            d[rows, targets[rows]] -= 1
            return (d * dloss / n_valid).reshape(shape)
        """, "dlogits", "ignored positions (target -100) must pass no gradient"),
    ("attention", attn("dq, dk = dq / scale, dk / scale"), "dqkv",
     "dq part wrong: off by a constant factor 2 = sqrt(hs)"),
    ("attention", attn("dS = P * dP\ndq, dk = dS @ k * scale, dS.swapaxes(-1, -2) @ q * scale"),
     "dqkv", "right only on the diagonal of the softmax Jacobian"),
    ("attention", attn("dk = dS @ q * scale"), "dqkv", "dk used dS where dSᵀ is needed"),
    ("embedding", """
        def embedding_backward(dout, cache):
            idx, V, block = cache
            C = dout.shape[-1]
            dwte = np.zeros((V, C))
            dwte[idx.reshape(-1)] = dout.reshape(-1, C)
            dwpe = np.zeros((block, C))
            dwpe[:dout.shape[1]] = dout.sum(0)
            return dwte, dwpe
        """, "dwte", "repeated token ids overwrote each other"),
    ("embedding", """
        def embedding_backward(dout, cache):
            idx, V, block = cache
            C = dout.shape[-1]
            dwte = np.zeros((V, C))
            np.add.at(dwte, idx.reshape(-1), dout.reshape(-1, C))
            return dwte, dout.sum(0)
        """, "dwpe", "the gradient must have the parameter's full shape"),
    ("dropout", """
        def dropout_backward(dout, cache):
            mask, scale = cache
            return dout * mask
        """, "dx", "1-p: the 1/(1-p) scale is missing"),
    ("residual", """
        def residual_backward(dout, cache):
            x, w = cache
            C = x.shape[-1]
            return dout @ w, dout.reshape(-1, C).T @ x.reshape(-1, C), dout.sum((0, 1))
        """, "dx", "missing the skip path"),
    ("rmsnorm", """
        def rmsnorm_backward(dout, cache):
            n, rstd, w = cache
            return rstd * dout * w, (dout * n).sum((0, 1))
        """, "dx", "dx misses its mean_C(g n) term"),
    ("rmsnorm", """
        def rmsnorm_backward(dout, cache):
            n, rstd, w = cache
            g, m = dout * w, lambda z: z.mean(-1, keepdims=True)
            return rstd * (g - m(g) - n * m(g * n)), (dout * n).sum((0, 1))
        """, "dx", "dx has LayerNorm's - mean_C(g) term"),
    ("rmsnorm", """
        def rmsnorm_backward(dout, cache):
            n, rstd, w = cache
            g = dout * w
            return rstd * (g - n * (g * n).mean(-1, keepdims=True)), (dout * n).sum((0, 1))[0]
        """, "dw", "wrong shape"),
    ("rope", """
        def rope_backward(dout, cache):
            cos, sin, layout = cache
            return rope_forward(dout, cos, sin, layout)[0]
        """, "dx", "turned by +θ (the forward again)"),
    ("rope", """
        def rope_backward(dout, cache):
            cos, sin, layout = cache
            return rope_forward(dout, cos, -sin, "halves")[0]
        """, "dx", "the pair layout is mixed up: this case's layout is 'interleaved'"),
    ("rope", """
        def rope_backward(dout, cache):
            cos, sin, layout = cache
            return dout
        """, "dx", "dout passed through unturned"),
    ("swiglu", """
        def swiglu_backward(dout, cache):
            g, u = cache
            s = sigmoid(g)
            return dout * u * s, dout * g * s
        """, "dg", "dg dropped the gate's path through sigmoid"),
    ("swiglu", """
        def swiglu_backward(dout, cache):
            g, u = cache
            s = sigmoid(g)
            return dout * u * s * (1 + g * (1 - s)), dout * s
        """, "du", "du used σ(g) where silu(g) = g σ(g) multiplies u"),
    ("gqa", gqa("dk, dv = dk[:, ::G], dv[:, ::G]"), "dqkv",
     "dk and dv taken from one query head (the first of each group)"),
    ("gqa", gqa("dk, dv = dk[:, G - 1::G], dv[:, G - 1::G]"), "dqkv",
     "dk and dv taken from one query head (the last of each group"),
    ("gqa", gqa("dk, dv = dk.reshape(B, G, KV, T, hs).sum(1), dv.reshape(B, G, KV, T, hs).sum(1)"),
     "dqkv", "summed the wrong query heads: query head h reads K/V head h // G"),
    ("gqa", gqa("dk, dv = dk.reshape(B, KV, G, T, hs).mean(2), dv.reshape(B, KV, G, T, hs).sum(2)"),
     "dqkv", "dq part right; dk part wrong: off by a constant factor 0.5 = 1/G: averaged over "
             "the group"),
]


@pytest.mark.parametrize("name, code, grad, expected", MISTAKES,
                         ids=[f"{m[0]}-{m[3][:24]}" for m in MISTAKES])
def test_each_planted_mistake_gets_its_diagnosis(tmp_path, name, code, grad, expected):
    write(tmp_path, name, code)
    report, progress = check(name, tmp_path)
    assert not report.passed and progress[name] == "failed"
    by_name = {g.name: g for g in report.grads}
    assert expected in by_name[grad].diagnosis, by_name[grad].diagnosis
    assert [g.name for g in report.grads if not g.ok] == [grad]  # the others stay correct


def test_the_model_exercise_names_a_missing_tied_gradient(tmp_path):
    solved_folder(tmp_path, model_tied=" - dhead")
    report, _ = check("model", tmp_path)
    wrong = {g.name: g.diagnosis for g in report.grads if not g.ok}
    assert list(wrong) == ["transformer.wte.weight"]
    assert "only the embedding's gradient" in wrong["transformer.wte.weight"]


# (a piece of the llama solution swapped for a mistake, the first gradient it spoils in
# backward order, what the diagnosis must say, a gradient that stays right)
LLAMA_MISTAKES = [
    ({"{gate}": ""}, "transformer.h.1.ln_2.weight", "the gate path's is missing",
     "transformer.h.1.mlp.c_gate.weight"),
    ({"{gate}": " * 0 + dmg"}, "transformer.h.1.ln_2.weight", "the up path's, c_fc, is missing",
     "transformer.h.1.mlp.c_fc.weight"),
    ({"{rope}": "(lambda z, c: z)"}, "transformer.h.1.attn.c_attn.weight",
     "dq and dk were not turned back", "transformer.h.1.attn.c_proj.weight"),
    ({"{rope}": "(lambda z, c: rope_forward(z, c.cos, c.sin, c.layout)[0])"},
     "transformer.h.1.attn.c_attn.weight", "dq and dk turned by +θ (rope_forward)",
     "transformer.h.1.ln_2.weight"),
    ({"{head}": " + g['lm_head.weight']"}, "transformer.wte.weight",
     "Llama's head is untied", "transformer.h.0.ln_1.weight"),
]


@pytest.mark.parametrize("change, grad, expected, right", LLAMA_MISTAKES,
                         ids=[m[2][:24] for m in LLAMA_MISTAKES])
def test_the_llama_exercise_names_its_mistakes(tmp_path, change, grad, expected, right):
    solved_folder(tmp_path, llama=change)
    report, _ = check("llama", tmp_path)
    by_name = {g.name: g for g in report.grads}
    assert not report.passed and by_name[right].ok and by_name["lm_head.weight"].ok
    assert expected in by_name[grad].diagnosis, by_name[grad].diagnosis


def test_the_llama_diagnosis_reference_is_gpt_backward():
    """llama_model's plain forward/backward (the known mistakes are its switches) gives
    GPT.backward's gradients when no mistake is switched on."""
    from numpy_gpt import GPT
    from numpy_gpt.exercises.llama_model import (
        CONFIG,
        llama_cases,
        reference_backward,
        reference_forward,
    )

    rng = np.random.default_rng(3)
    model = GPT(CONFIG, dtype="float64", seed=0)
    for p in model.params.values():
        p += 0.1 * rng.standard_normal(p.shape)
    for _, idx, targets in llama_cases(rng):
        want = model.backward(model.forward(idx, targets)[2])
        got = reference_backward(reference_forward(model.params, idx, targets))
        assert list(got) and set(got) == set(want)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("code, expected", [
    ("def linear_backward(dout, cache)\n    return 1", "line 1: syntax error"),
    ("del linear_backward", "has no function linear_backward()"),
    ("def linear_backward(dout, cache):\n    return dout, dout",
     "returned 2 values; expected 3: dx, dw, db"),
    ("def linear_backward(dout, cache):\n    return cache.nope",
     "linear_backward raised AttributeError"),
    ("", "linear_backward is not written yet (linear.py line"),
])
def test_a_broken_file_gets_one_clear_line(tmp_path, capsys, code, expected):
    if code.startswith("def linear_backward(dout, cache)\n"):
        (tmp_path / "linear.py").write_text(code)  # the syntax error on line 1
    else:
        write(tmp_path, "linear", code)
    with pytest.raises(ExerciseError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        check("linear", tmp_path)
    assert cli.main(["exercise", "check", "linear", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err


def test_start_keeps_the_learners_work_unless_forced(tmp_path):
    path = start("attention", tmp_path)
    assert "def attention_backward(dout, cache):" in path.read_text()
    path.write_text("my work")
    with pytest.raises(ValueError, match="--force"):
        start("attention", tmp_path)
    assert path.read_text() == "my work"
    assert start("attention", tmp_path, force=True).read_text() == exercise_source(
        "attention", tmp_path)
    with pytest.raises(ValueError, match="inside the numpy_gpt package"):
        start("linear", Path(numpy_gpt.__file__).parent / "my_exercises")


def test_cli_list_start_check_hint(tmp_path, capsys):
    d = str(tmp_path)
    assert cli.main(["exercise", "start", "dropout", "--dir", d]) == 0
    assert cli.main(["exercise", "start", "dropout", "--dir", d]) == 1  # no overwrite
    write(tmp_path, "dropout", REFERENCE["dropout"])
    assert cli.main(["exercise", "check", "dropout", "--dir", d]) == 0
    assert cli.main(["exercise", "list", "--dir", d]) == 0
    assert cli.main(["exercise", "hint", "attention", "--level", "3"]) == 0
    out = capsys.readouterr().out
    assert "PASSED: dropout" in out and "progress: 1/14 passed (dropout); next: linear" in out
    assert "level 1:" in out and "level 3:" in out and "dS = P * (dP" in out
    # the Llama exercises follow the nine, in docs/backprop.md's order (§10a-e)
    assert "\n 9. model " in out and "\n10. rmsnorm " in out and "\n11. rope " in out
    assert "\n12. swiglu " in out and "\n13. gqa " in out and "\n14. llama " in out
    for name in ORDER:
        assert len(hint(name, 1)) == 1 and len(hint(name, 3)) == 3


def test_the_model_exercise_says_which_layer_file_is_missing(tmp_path):
    start("model", tmp_path)
    with pytest.raises(ExerciseError, match="model.py uses your attention.py, which is not in"):
        check("model", tmp_path)


def test_diagnose_names_each_generic_mistake():
    from numpy_gpt.exercises.diagnosis import diagnose

    rng = np.random.default_rng(0)
    dims = {"B": 2, "T": 3, "C": 4}
    w = rng.standard_normal((4, 4))
    per_row = rng.standard_normal((2, 3, 4))
    factors = {"1/N": (1 / 6, "a mean, not a sum")}
    assert diagnose(w.copy(), w, dims=dims) is None
    assert "transposed" in diagnose(w.T, w, dims=dims)
    assert "wrong sign" in diagnose(-w, w, dims=dims)
    assert "0.1667 = 1/N: a mean" in diagnose(w / 6, w, dims=dims, factors=factors)
    assert "off by a constant factor 3" in diagnose(3 * w, w, dims=dims)
    assert "missing the sum over B=2, T=3" in diagnose(per_row, per_row.sum((0, 1)), dims=dims)
    assert "missing the sum over B=2" in diagnose(per_row, per_row.sum(0), dims=dims)
    diag_only = w.copy()
    diag_only[~np.eye(4, dtype=bool)] += 1.0
    assert "right only on the diagonal" in diagnose(diag_only, w, dims=dims)
    assert "this is dw's value" in diagnose(w, w + 1, dims=dims, others={"dw": w})
    assert "wrong shape (C=4, B=2), expected (C=4, C=4)" in diagnose(w[:, :2], w, dims=dims)
    assert "returned None" in diagnose(None, w, dims=dims)


def test_the_starting_file_names_a_guide_that_opens_from_anywhere(tmp_path):
    """The file says the guide's full path (not `docs/backprop.md`, which opens only from the
    repository's root), and the section it names is a heading of that guide; an installed copy
    without the guide says where it lives and which hint holds its equations."""
    from numpy_gpt.exercises.catalog import LAYER_EXERCISES
    from numpy_gpt.exercises.templates import GUIDE, guide_line

    path = start("linear", tmp_path / "elsewhere")
    line = next(x for x in path.read_text().splitlines() if x.startswith("Read "))
    assert line == f'Read {GUIDE}, section "{LAYER_EXERCISES["linear"].section}".'
    assert GUIDE.is_absolute() and f"## {LAYER_EXERCISES['linear'].section}\n" in GUIDE.read_text()
    from numpy_gpt.exercises.catalog import MODEL_EXERCISES
    sections = [e.section for e in LAYER_EXERCISES.values()]
    sections += [section for _, section, _ in MODEL_EXERCISES.values()]
    headings = {line.lstrip("#").strip() for line in GUIDE.read_text().splitlines()
                if line.startswith("#")}
    assert set(sections) <= headings, set(sections) - headings
    text = guide_line("3. LayerNorm", "layernorm", tmp_path / "absent.md")
    assert "installed numpy_gpt does not include it" in text
    assert "exercise hint layernorm\n--level 3" in text
