#!/usr/bin/env python3
"""Writes tests/fixtures/sae_grads.json: PyTorch autograd's losses and gradients for the
Matryoshka and JumpReLU losses of ../shared/bench/peer_sae_train.py, on small random cases.
The Rust test `sae::train::fixture_tests` feeds the same parameters and batch to saescope's
sparse trainer and compares. Not part of the test command (it needs torch):

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch
    /tmp/venv/bin/python scripts/make-sae-grad-fixtures.py

Parameters are stored in saescope's layout: w_enc_t and w_dec [d_sae, d_in] row-major.
"""
import json, pathlib, torch

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)  # the reference in f64; saescope runs f32


class Step(torch.autograd.Function):
    """H(z - theta), rectangle-kernel pseudo-derivative for theta (the peer's Step)."""

    @staticmethod
    def forward(ctx, z, theta, bw):
        ctx.save_for_backward(z, theta)
        ctx.bw = bw
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, g):
        z, theta = ctx.saved_tensors
        k = ((z - theta).abs() < ctx.bw / 2).to(z.dtype) / ctx.bw
        return None, (-k * g).sum(0), None


class Jump(torch.autograd.Function):
    """z * H(z - theta) (the peer's Jump)."""

    @staticmethod
    def forward(ctx, z, theta, bw):
        ctx.save_for_backward(z, theta)
        ctx.bw = bw
        return z * (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, g):
        z, theta = ctx.saved_tensors
        on = (z > theta).to(z.dtype)
        k = ((z - theta).abs() < ctx.bw / 2).to(z.dtype) / ctx.bw
        return g * on, (-theta * k * g).sum(0), None


def case(arch, seed, rows=9, d_in=6, d_sae=16, k=3, **kw):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    x = r(rows, d_in)
    w_enc_t = (r(d_sae, d_in) * 0.6).requires_grad_()
    b_enc = (r(d_sae) * 0.3).requires_grad_()
    w_dec = r(d_sae, d_in)
    w_dec = (w_dec / w_dec.norm(dim=-1, keepdim=True)).requires_grad_()
    b_dec = (r(d_in) * 0.1).requires_grad_()
    params = [w_enc_t, b_enc, w_dec, b_dec]
    pre = (x - b_dec) @ w_enc_t.t() + b_enc
    out = {"arch": arch, "rows": rows, "d_in": d_in, "d_sae": d_sae, "k": k, **kw}
    if arch == "matryoshka":
        flat = torch.relu(pre).flatten()
        v, i = flat.topk(k * rows)
        z = torch.zeros_like(flat).scatter(0, i, v).view_as(pre)
        loss = 0.0
        for m in kw["ends"]:
            loss = loss + ((z[:, :m] @ w_dec[:m] + b_dec) - x).pow(2).sum(-1).mean()
        out["loss"] = loss.item()
        out["sparsity_loss"] = 0.0
        total = loss
    else:
        bw = kw["bandwidth"]
        log_theta = (torch.log(torch.full((d_sae,), 0.5)) + r(d_sae) * 0.5).requires_grad_()
        params.append(log_theta)
        theta = log_theta.exp()
        zr = torch.relu(pre)
        f = Jump.apply(zr, theta, bw)
        l0 = Step.apply(zr, theta, bw).sum(-1).mean()
        mse = ((f @ w_dec + b_dec) - x).pow(2).sum(-1).mean()
        if kw.get("l0_target") is None:
            pen = kw["l0_coeff"] * l0
        else:
            pen = kw["l0_coeff"] * (l0 / kw["l0_target"] - 1) ** 2
        out["loss"] = mse.item()
        out["sparsity_loss"] = pen.item()
        total = mse + pen
    total.backward()
    flat = lambda t: [float(v) for v in t.detach().flatten()]
    out["x"] = flat(x)
    names = ["w_enc_t", "b_enc", "w_dec", "b_dec", "log_threshold"]
    for n, p in zip(names, params):
        out[n] = flat(p)
        out["grad_" + n] = flat(p.grad)
    return out


cases = []
for seed in range(3):
    cases.append(case("matryoshka", seed, ends=[4, 8, 16]))
    cases.append(case("matryoshka", 10 + seed, ends=[2, 5, 11, 16]))
    cases.append(case("jumprelu", 20 + seed, bandwidth=0.4, l0_coeff=0.05))
    cases.append(case("jumprelu", 30 + seed, bandwidth=0.4, l0_coeff=0.3, l0_target=4.0))
for c in cases:
    if c["arch"] == "jumprelu":
        # The kernel must have caught some entries, or the test checks nothing about theta.
        assert any(abs(v) > 1e-6 for v in c["grad_log_threshold"]), "no entry near a threshold"
path = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/sae_grads.json"
path.write_text(json.dumps({"made_by": "scripts/make-sae-grad-fixtures.py",
                            "torch": torch.__version__, "cases": cases}))
print(f"wrote {len(cases)} cases to {path}")
