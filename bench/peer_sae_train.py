#!/usr/bin/env python3
"""Peer baseline: TopK sparse-autoencoder training throughput in PyTorch, on the CPU or a GPU.

A copy of ../shared/bench/peer_sae_train.py with a --device option (issue: models and SAEs on
the local GPU): the same model and step (encoder Linear + ReLU + top-k, dense decoder matmul,
MSE loss, Adam, unit-norm decoder rows after each step); on CUDA the clock stops after a
synchronise. Prints one line: tokens/s.

usage: peer_sae_train.py [--d-in 768] [--d-sae 16384] [--k 32] [--batch 4096] [--steps 20]
                         [--threads 2] [--device cpu|cuda|cuda:N]
"""
import argparse, time, torch

p = argparse.ArgumentParser()
p.add_argument("--d-in", type=int, default=768)
p.add_argument("--d-sae", type=int, default=16384)
p.add_argument("--k", type=int, default=32)
p.add_argument("--batch", type=int, default=4096)
p.add_argument("--steps", type=int, default=20)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--device", default="cpu")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
dev = torch.device(a.device)

W_enc = torch.nn.Parameter(torch.randn(a.d_in, a.d_sae, device=dev) / a.d_in**0.5)
b_enc = torch.nn.Parameter(torch.zeros(a.d_sae, device=dev))
W_dec = torch.nn.Parameter(W_enc.detach().t().clone())
b_dec = torch.nn.Parameter(torch.zeros(a.d_in, device=dev))
opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=4e-4)
x_all = torch.randn(a.batch * 4, a.d_in, device=dev)


def step(x):
    pre = torch.relu((x - b_dec) @ W_enc + b_enc)
    v, i = pre.topk(a.k, dim=-1)
    z = torch.zeros_like(pre).scatter_(-1, i, v)
    x_hat = z @ W_dec + b_dec
    loss = (x_hat - x).pow(2).sum(-1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        W_dec.div_(W_dec.norm(dim=-1, keepdim=True))
    return loss.item()


for s in range(3):  # warm-up
    step(x_all[(s % 4) * a.batch:(s % 4 + 1) * a.batch])
if dev.type == "cuda":
    torch.cuda.synchronize()
t0 = time.perf_counter()
for s in range(a.steps):
    step(x_all[(s % 4) * a.batch:(s % 4 + 1) * a.batch])
if dev.type == "cuda":
    torch.cuda.synchronize()
dt = time.perf_counter() - t0
print(f"pytorch topk-sae train: {a.batch * a.steps / dt:.0f} tokens/s "
      f"(d_in={a.d_in} d_sae={a.d_sae} k={a.k} batch={a.batch} threads={a.threads} device={a.device})")
