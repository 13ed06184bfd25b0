"""Parity and speed of ``sksurvfusion.nn.Mamba`` against ``mamba_ssm`` on a CUDA GPU.

For each shape (batch 16/256, length 5/20, d_model 64/128) the script

1. builds ``mamba_ssm.modules.mamba_simple.Mamba`` and ``sksurvfusion.nn.Mamba`` with the
   same weights, loading the state_dict both ways (theirs into ours, ours into theirs);
2. with TF32 off, compares float32 outputs (max |diff| <= 1e-5 * max(1, max |ref|)) and
   the gradients of the input and of every parameter (relative L2 error <= 1e-4) of
   - ours in pure PyTorch (``mamba_backend="torch"``), and
   - ours through mamba_ssm's kernels (``mamba_backend="mamba_ssm"``)
   against the official module, and our selective scan against ``selective_scan_ref``;
3. times forward + backward of each with CUDA events and prints a table.

Without CUDA or without mamba_ssm it says so, runs what it can (the pure-PyTorch module
on the CPU or on the GPU), and exits with status 0. The exit status is 1 if a parity
check fails.

    python benchmarks/gpu_parity.py [--reps 50]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys

import torch

from sksurvfusion.nn import Mamba, selective_scan

SHAPES = [(b, length, d) for b in (16, 256) for length in (5, 20) for d in (64, 128)]
OUTPUT_TOL = 1e-5
GRAD_TOL = 1e-4


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).norm() / expected.norm().clamp_min(1e-30)).item()


def output_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """Max absolute difference, scaled by the size of the reference output."""
    return ((got - expected).abs().max() / expected.abs().max().clamp_min(1.0)).item()


def run(module, x, grad_out):
    """Output and gradients (input first, then parameters by name)."""
    module.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_()
    out = module(x)
    out.backward(grad_out)
    grads = {"input": x.grad}
    grads.update({name: p.grad for name, p in module.named_parameters()})
    return out.detach(), grads


def compare(module, reference, x, grad_out) -> tuple[float, float]:
    out, grads = run(module, x, grad_out)
    ref_out, ref_grads = run(reference, x, grad_out)
    grad_err = max(relative_error(grads[k], ref_grads[k]) for k in ref_grads)
    return output_error(out, ref_out), grad_err


def time_ms(module, x, grad_out, reps: int) -> float:
    """Median ms of forward + backward, timed with CUDA events."""
    x = x.detach().requires_grad_()
    for _ in range(5):
        module(x).backward(grad_out)
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        module(x).backward(grad_out)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def scan_parity(selective_scan_ref, device) -> float:
    """Our batch-first selective scan against mamba_ssm's reference, (b, d, l) layout."""
    b, length, d, n = 4, 20, 64, 16
    u, dt, z = (torch.randn(b, length, d, device=device) for _ in range(3))
    B, C = torch.randn(b, length, n, device=device), torch.randn(b, length, n, device=device)
    A = -torch.rand(d, n, device=device) * 4 - 0.1
    D, bias = torch.randn(d, device=device), torch.randn(d, device=device) - 3
    ours = selective_scan(u, dt, A, B, C, D, z, bias, True)
    ref = selective_scan_ref(
        *(t.transpose(1, 2) for t in (u, dt)),
        A,
        B.transpose(1, 2),
        C.transpose(1, 2),
        D,
        z=z.transpose(1, 2),
        delta_bias=bias,
        delta_softplus=True,
    ).transpose(1, 2)
    return output_error(ours, ref)


def cpu_only_check() -> None:
    """What runs without a GPU: our module, forward and backward, at every shape."""
    for batch, length, d_model in SHAPES:
        mixer = Mamba(d_model, mamba_backend="torch")
        x = torch.randn(batch, length, d_model, requires_grad=True)
        mixer(x).square().mean().backward()
        assert torch.isfinite(x.grad).all()
    print(f"CPU check: sksurvfusion.nn.Mamba forward+backward ran at {len(SHAPES)} shapes.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args()

    has_cuda = torch.cuda.is_available()
    has_mamba_ssm = importlib.util.find_spec("mamba_ssm") is not None
    if not has_cuda:
        print("No CUDA device: nothing to compare against mamba_ssm here.")
        cpu_only_check()
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, TF32 off")

    OfficialMamba = selective_scan_ref = None
    if has_mamba_ssm:
        from mamba_ssm.modules.mamba_simple import Mamba as OfficialMamba
        from mamba_ssm.ops.selective_scan_interface import selective_scan_ref
    else:
        print("mamba_ssm is not installed (pip install sksurvfusion[mamba]): timing ours only.")

    failed = False
    if selective_scan_ref is not None:
        err = scan_parity(selective_scan_ref, device)
        ok = err <= OUTPUT_TOL
        failed |= not ok
        verdict = "ok" if ok else "FAIL"
        print(f"selective_scan vs selective_scan_ref: scaled max error {err:.2e} {verdict}")

    header = (
        f"{'batch':>5} {'len':>4} {'d':>4} | {'out err':>8} {'grad err':>8} "
        f"{'out err':>8} {'grad err':>8} | {'official':>9} {'ours/ssm':>9} {'ours/torch':>10}"
    )
    print("\nerrors: ours (torch) vs official | ours (mamba_ssm kernels) vs official;")
    print("times: median ms per forward+backward\n" + header + "\n" + "-" * len(header))
    for batch, length, d_model in SHAPES:
        torch.manual_seed(0)
        ours = Mamba(d_model, mamba_backend="torch").to(device)
        x = torch.randn(batch, length, d_model, device=device)
        grad_out = torch.randn(batch, length, d_model, device=device)
        cells = ["n/a"] * 4
        t_official = t_ssm = float("nan")
        if OfficialMamba is not None:
            official = OfficialMamba(d_model).to(device)
            ours.load_state_dict(official.state_dict())  # theirs into ours
            ours_ssm = Mamba(d_model, mamba_backend="mamba_ssm").to(device)
            official.load_state_dict(ours_ssm.state_dict())  # ours into theirs
            ours.load_state_dict(ours_ssm.state_dict())
            errors = [
                *compare(ours, official, x, grad_out),
                *compare(ours_ssm, official, x, grad_out),
            ]
            oks = [
                error <= tol for error, tol in zip(errors, [OUTPUT_TOL, GRAD_TOL] * 2, strict=True)
            ]
            failed |= not all(oks)
            cells = [f"{e:.1e}{'' if ok else '!'}" for e, ok in zip(errors, oks, strict=True)]
            t_official = time_ms(official, x, grad_out, args.reps)
            t_ssm = time_ms(ours_ssm, x, grad_out, args.reps)
        t_torch = time_ms(ours, x, grad_out, args.reps)
        print(
            f"{batch:>5} {length:>4} {d_model:>4} | {cells[0]:>8} {cells[1]:>8} "
            f"{cells[2]:>8} {cells[3]:>8} | {t_official:9.3f} {t_ssm:9.3f} {t_torch:10.3f}"
        )
    print(
        f"\ntolerances: outputs {OUTPUT_TOL:g} (scaled max), gradients {GRAD_TOL:g} (relative L2)"
    )
    if failed:
        print("PARITY FAILED (cells marked '!')")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
