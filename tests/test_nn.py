"""Tests of sksurvfusion.nn: Mamba, selective scan, encoders, adapters, fusion network."""

import importlib
import importlib.util
import sys
import threading

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import sksurvfusion
import sksurvfusion.nn.encoders as encoders_module
import sksurvfusion.nn.scan as scan_module
from sksurvfusion.losses import cox_partial_likelihood
from sksurvfusion.nn import (
    FusionSurvivalNet,
    Mamba,
    MambaAdapter,
    MLPAdapter,
    ModalityEncoder,
    ModalityLinear,
    ModalityTokenizer,
    TransformerAdapter,
    causal_conv1d_silu,
    pool_tokens,
    selective_scan,
)
from sksurvfusion.nn._random import Dropout, draws_from, set_generator
from sksurvfusion.nn.adapters import MambaBlock
from sksurvfusion.nn.scan import FUSED_MAX_LENGTH, mamba_mixer, mamba_mixer_inference

from _numerics import assert_close_to_scale

HAS_MAMBA_SSM = importlib.util.find_spec("mamba_ssm") is not None
ADAPTERS = ("mamba", "transformer", "mlp")
POOLINGS = ("mean", "last")

# Four modalities: widths 3, 4, 3, 2; modalities 0 and 2 can share an encoder.
WIDTHS = (3, 4, 3, 2)
COLUMNS = [list(range(sum(WIDTHS[:i]), sum(WIDTHS[: i + 1]))) for i in range(len(WIDTHS))]
N_FEATURES = sum(WIDTHS)
N_MODALITIES = len(WIDTHS)


@pytest.fixture(autouse=True)
def _seeded_single_thread():
    # One intra-op thread: these tensors are tiny, and on a busy machine OpenMP barriers
    # between threads cost far more than they save.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def random_mask(n, n_modalities=N_MODALITIES, p_missing=0.4):
    mask = torch.rand(n, n_modalities) > p_missing
    mask[torch.arange(n), torch.randint(n_modalities, (n,))] = True  # never all missing
    return mask


def small_net(adapter="mamba", **kwargs):
    params = {"d_model": 8, "n_layers": 2, "d_state": 4, "n_heads": 2, "encoder_hidden": 16}
    params.update(kwargs)
    return FusionSurvivalNet(COLUMNS, adapter=adapter, **params)


# ----------------------------------------------------------------------------------------
# Mamba
# ----------------------------------------------------------------------------------------


def naive_mamba(mixer, x):
    """Mamba (v1) written token by token from the paper's equations, for one batch row."""
    d_inner, d_state, rank, width = mixer.d_inner, mixer.d_state, mixer.dt_rank, mixer.d_conv
    weight_in, bias_in = mixer.in_proj.weight, mixer.in_proj.bias
    conv_w, conv_b = mixer.conv1d.weight[:, 0, :], mixer.conv1d.bias
    A = -torch.exp(mixer.A_log)
    outputs = []
    for row in x:
        xz = row @ weight_in.T + (0 if bias_in is None else bias_in)
        u_raw, z = xz[:, :d_inner], xz[:, d_inner:]
        state = torch.zeros(d_inner, d_state, dtype=x.dtype)
        out_row = []
        for t in range(len(row)):
            acc = torch.zeros(d_inner, dtype=x.dtype) if conv_b is None else conv_b.clone()
            for k in range(width):
                s = t - (width - 1) + k
                if s >= 0:
                    acc = acc + conv_w[:, k] * u_raw[s]
            u = acc * torch.sigmoid(acc)
            proj = mixer.x_proj.weight @ u
            dt, B, C = proj[:rank], proj[rank : rank + d_state], proj[rank + d_state :]
            delta = torch.log1p(torch.exp(mixer.dt_proj.weight @ dt + mixer.dt_proj.bias))
            state = torch.exp(delta[:, None] * A) * state + (delta * u)[:, None] * B[None, :]
            y = state @ C + mixer.D * u
            y = y * (z[t] * torch.sigmoid(z[t]))
            out = mixer.out_proj.weight @ y
            if mixer.out_proj.bias is not None:
                out = out + mixer.out_proj.bias
            out_row.append(out)
        outputs.append(torch.stack(out_row))
    return torch.stack(outputs)


def randomise(module):
    """Move every parameter away from its special initial value."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name == "A_log":
                param.copy_(torch.log(torch.rand_like(param) * 3 + 0.5))
            else:
                param.add_(torch.randn_like(param) * 0.3)
    return module


def run_in_threads(work, n_threads):
    """Run ``work(i)`` for i in range(n_threads), each in a thread of its own, to the end."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class TestMamba:
    @pytest.mark.parametrize("use_fast_path", [True, False])
    @pytest.mark.parametrize(
        ("length", "d_conv", "bias", "conv_bias"),
        [
            (7, 4, False, True),
            (3, 4, True, False),
            (1, 2, False, True),
            (9, 3, True, True),
            (FUSED_MAX_LENGTH + 3, 4, False, True),
        ],
    )
    def test_matches_naive_recurrence(self, length, d_conv, bias, conv_bias, use_fast_path):
        mixer = Mamba(
            6, d_state=5, d_conv=d_conv, bias=bias, conv_bias=conv_bias,
            use_fast_path=use_fast_path,
        )  # fmt: skip
        mixer = randomise(mixer.double())
        x = torch.randn(3, length, 6, dtype=torch.float64)
        torch.testing.assert_close(mixer(x), naive_mamba(mixer, x), atol=1e-10, rtol=0)

    def test_float32_error_is_float32_rounding(self, monkeypatch):
        # The float32 error against float64 must be that of the plain reference recurrence
        # (mamba_ssm's selective_scan_ref, written with torch.exp): rounding, nothing more.
        mixer = randomise(Mamba(32, d_state=16))
        x = torch.randn(4, 20, 32)
        exact = mixer.double()(x.double())
        fused_mixer = mixer.float()(x).double()
        mixer.use_fast_path = False
        fused_scan = mixer(x).double()
        monkeypatch.setattr(
            "sksurvfusion.nn.mamba.selective_scan",
            lambda *args, **kwargs: selective_scan(*args, **kwargs, method="loop"),
        )
        reference = mixer(x).double()
        reference_error = (reference - exact).abs().max()
        assert reference_error < 1e-5 * exact.abs().max()
        assert (fused_mixer - exact).abs().max() <= 2 * reference_error
        assert (fused_scan - exact).abs().max() <= 2 * reference_error

    @pytest.mark.parametrize("use_fast_path", [True, False])
    def test_causal(self, use_fast_path):
        mixer = randomise(Mamba(8, d_state=4, use_fast_path=use_fast_path)).double()
        x = torch.randn(2, 9, 8, dtype=torch.float64)
        for i in range(8):
            changed = x.clone()
            changed[:, i + 1 :] = torch.randn_like(changed[:, i + 1 :]) * 100
            out, original = mixer(changed), mixer(x)
            torch.testing.assert_close(out[:, : i + 1], original[:, : i + 1])
            assert not torch.allclose(out[:, i + 1], original[:, i + 1])

    @pytest.mark.parametrize("use_fast_path", [True, False])
    @pytest.mark.parametrize("length", [1, 5])
    def test_gradcheck_inputs_and_parameters(self, use_fast_path, length):
        mixer = Mamba(4, d_state=3, d_conv=3, bias=True, use_fast_path=use_fast_path)
        mixer = randomise(mixer).double()
        names, params = zip(*mixer.named_parameters(), strict=True)
        params = [p.detach().clone().requires_grad_() for p in params]
        x = torch.randn(2, length, 4, dtype=torch.float64, requires_grad=True)

        def run(x, *params):
            return functional_call(mixer, dict(zip(names, params, strict=True)), (x,))

        assert torch.autograd.gradcheck(run, (x, *params))

    def test_large_step_sizes_agree_and_stay_finite(self):
        # exp(delta A) underflows (the fused mixer clamps its exponent); both paths must
        # give the same finite outputs and gradients.
        mixer = randomise(Mamba(8, d_state=4))
        with torch.no_grad():
            mixer.dt_proj.bias.fill_(500.0)
        x = torch.randn(2, 6, 8, requires_grad=True)
        results = []
        for use_fast_path in (True, False):
            mixer.use_fast_path = use_fast_path
            out = mixer(x)
            results.append((out, *torch.autograd.grad(out.square().sum(), [x, mixer.A_log])))
        for fused, blocked in zip(*results, strict=True):
            assert torch.isfinite(fused).all()
            # gradients of magnitude ~1e4 here: other kernels differ by ~1e-2 absolute
            assert_close_to_scale(fused, blocked)

    def test_autocast_runs_the_unfused_path(self):
        mixer = randomise(Mamba(8, d_state=4))
        x = torch.randn(2, 5, 8, requires_grad=True)
        outputs = []
        for use_fast_path in (True, False):
            mixer.use_fast_path = use_fast_path
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = mixer(x)
            (grad,) = torch.autograd.grad(out.float().sum(), x)
            outputs.append((out, grad))
        for fast, unfused in zip(*outputs, strict=True):
            torch.testing.assert_close(fast, unfused)

    def test_fused_mixer_only_for_short_small_recorded_sequences(self, monkeypatch):
        mixer = Mamba(8, d_state=4)
        short = torch.randn(2, 5, 8)
        assert mixer._fused_kernel(short) is mamba_mixer
        assert mixer._fused_kernel(torch.randn(2, FUSED_MAX_LENGTH + 1, 8)) is None
        assert mixer._fused_kernel(short.half()) is None
        with torch.no_grad():
            assert mixer._fused_kernel(short) is mamba_mixer_inference
            assert mixer._fused_kernel(torch.randn(2, FUSED_MAX_LENGTH + 1, 8)) is None
        with torch.inference_mode():
            assert mixer._fused_kernel(short) is mamba_mixer_inference
        assert mixer._fused_kernel(torch.randn(0, 5, 8)) is None
        monkeypatch.setattr("sksurvfusion.nn.mamba.FUSED_MAX_STATE", 2 * 5 * 16 * 4 - 1)
        assert mixer._fused_kernel(short) is None
        with torch.no_grad():  # keeps one token's state: no limit
            assert mixer._fused_kernel(short) is mamba_mixer_inference

    @pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
    @pytest.mark.parametrize("length", [1, 2, 5, FUSED_MAX_LENGTH])
    @pytest.mark.parametrize("bias", [True, False])
    def test_inference_mixer_equals_reference_recurrence(self, monkeypatch, dtype, length, bias):
        # 2 x 16 x 16 state elements per row: blocks of _BLOCK_ELEMENTS / 512 rows, so
        # that 2 blocks and a part of one are run
        monkeypatch.setattr("sksurvfusion.nn.scan._BLOCK_ELEMENTS", 512 * 7)
        mixer = randomise(Mamba(16, d_state=16, expand=1, bias=bias, conv_bias=bias))
        mixer = mixer.to(dtype)
        x = torch.randn(17, length, 16, dtype=dtype)
        with torch.no_grad():
            assert mixer._fused_kernel(x) is mamba_mixer_inference
            fast = mixer(x)
        trained = mixer(x)  # the training kernel, on the same input
        monkeypatch.setattr(
            "sksurvfusion.nn.mamba.selective_scan",
            lambda *args, **kwargs: selective_scan(*args, **kwargs, method="loop"),
        )
        mixer.use_fast_path = False
        with torch.no_grad():
            reference = mixer(x)
        assert_close_to_scale(fast, reference)
        assert_close_to_scale(fast, trained.detach())

    def test_inference_mixer_clamps_subnormal_decays_as_training_does(self):
        # steps so large that exp(delta A) falls below the smallest normal float
        mixer = randomise(Mamba(8, d_state=4))
        with torch.no_grad():
            mixer.dt_proj.bias.fill_(200.0)
        x = torch.randn(3, 5, 8)
        with torch.no_grad():
            fast = mixer(x)
        trained = mixer(x).detach()
        assert torch.isfinite(fast).all()
        assert_close_to_scale(fast, trained)

    @staticmethod
    def mixer_args(mixer):
        """The arguments of ``mamba_mixer`` after the input, as the module passes them."""
        return [
            mixer.in_proj.weight, mixer.in_proj.bias, mixer.conv1d.weight, mixer.conv1d.bias,
            mixer.x_proj.weight, mixer.dt_proj.weight, mixer.dt_proj.bias, mixer.A_log,
            mixer.D, mixer.out_proj.weight, mixer.out_proj.bias,
        ]  # fmt: skip

    @pytest.mark.parametrize(
        ("length", "d_conv", "bias", "conv_bias"),
        [(1, 4, True, True), (2, 4, False, False), (5, 4, True, False), (6, 2, False, True)],
    )
    def test_fused_mixer_gradcheck(self, length, d_conv, bias, conv_bias):
        # every argument of the one autograd node, with and without the optional biases,
        # and sequences shorter than the convolution
        mixer = Mamba(4, d_state=3, d_conv=d_conv, bias=bias, conv_bias=conv_bias)
        mixer = randomise(mixer).double()
        x = torch.randn(2, length, 4, dtype=torch.float64, requires_grad=True)
        args = [
            a if a is None else a.detach().clone().requires_grad_() for a in self.mixer_args(mixer)
        ]
        assert torch.autograd.gradcheck(mamba_mixer, (x, *args))
        flat = [*args]
        flat[2] = flat[2].detach().squeeze(1).requires_grad_()  # (d_inner, d_conv) as well
        assert torch.autograd.gradcheck(mamba_mixer, (x, *flat))

    @pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
    @pytest.mark.parametrize("length", [1, 5, FUSED_MAX_LENGTH])
    def test_fused_mixer_equals_reference_recurrence(self, monkeypatch, dtype, length):
        # Outputs and the gradients of the input and of every parameter against the unfused
        # module running the plain autograd loop (mamba_ssm's selective_scan_ref recurrence).
        mixer = randomise(Mamba(16, d_state=8, bias=True)).to(dtype)
        x = torch.randn(6, length, 16, dtype=dtype, requires_grad=True)
        weight = torch.randn(6, length, 16, dtype=dtype)
        leaves = [x, *mixer.parameters()]
        assert mixer._fused_kernel(x) is mamba_mixer
        fused = mixer(x)
        fused_grads = torch.autograd.grad(fused, leaves, weight)
        monkeypatch.setattr(
            "sksurvfusion.nn.mamba.selective_scan",
            lambda *args, **kwargs: selective_scan(*args, **kwargs, method="loop"),
        )
        mixer.use_fast_path = False
        reference = mixer(x)
        reference_grads = torch.autograd.grad(reference, leaves, weight)
        assert_close_to_scale(fused, reference)
        names = ["x", *(name for name, _ in mixer.named_parameters())]
        for name, got, expected in zip(names, fused_grads, reference_grads, strict=True):
            assert_close_to_scale(got, expected, msg=name)

    def test_fused_mixer_backward_twice_and_interleaved(self):
        # The fused mixer keeps its states in pooled buffers: a retained graph must find
        # them intact after other calls took and returned buffers of the same size.
        mixer = randomise(Mamba(8, d_state=4)).double()
        first = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
        second = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)

        def reference(x):
            mixer.use_fast_path = False
            out = mixer(x)
            mixer.use_fast_path = True
            return out, torch.autograd.grad(out.sum(), x)[0]

        expected = [reference(first), reference(second)]
        out_first = mixer(first)
        out_second = mixer(second)  # two graphs alive at once, as in a stack of layers
        for _ in range(3):
            (grad_second,) = torch.autograd.grad(out_second.sum(), second, retain_graph=True)
            mixer(torch.randn_like(first)).sum().backward()  # takes and returns buffers
            (grad_first,) = torch.autograd.grad(out_first.sum(), first, retain_graph=True)
            torch.testing.assert_close(grad_first, expected[0][1])
            torch.testing.assert_close(grad_second, expected[1][1])
        torch.testing.assert_close(out_first, expected[0][0])
        torch.testing.assert_close(out_second, expected[1][0])

    def test_fused_mixer_in_threads(self):
        mixer = randomise(Mamba(8, d_state=4)).double()
        x = torch.randn(4, 5, 8, dtype=torch.float64, requires_grad=True)
        expected = torch.autograd.grad(mixer(x).square().sum(), x)[0]
        results = {}

        def work(i):
            for _ in range(10):
                results[i] = torch.autograd.grad(mixer(x).square().sum(), x)[0]

        run_in_threads(work, 4)
        assert len(results) == 4
        for grad in results.values():
            torch.testing.assert_close(grad, expected)

    def test_fused_and_unfused_blocks_draw_the_same_dropout(self):
        # The fused mixer's output is batch-first in memory, so a dropout mask drawn for it
        # falls on the same elements as one drawn for the unfused path's output.
        block = randomise(MambaBlock(8, d_state=4, dropout=0.5)).train()
        x = torch.randn(4, 5, 8, requires_grad=True)
        outputs = []
        for use_fast_path in (True, False):
            block.mixer.use_fast_path = use_fast_path
            set_generator(block, torch.Generator().manual_seed(5))
            out = block(x)
            outputs.append((out, torch.autograd.grad(out.square().sum(), x)[0]))
        assert outputs[0][0].is_contiguous()
        for fused, unfused in zip(*outputs, strict=True):
            assert_close_to_scale(fused, unfused)

    def test_state_dict_matches_mamba_ssm(self):
        d_model, d_state, d_conv, expand = 40, 8, 4, 2
        d_inner, dt_rank = expand * d_model, 3  # dt_rank "auto" = ceil(40 / 16)
        # state_dict lists a module's own parameters before its children's, hence A_log, D.
        expected = {
            "A_log": (d_inner, d_state),
            "D": (d_inner,),
            "in_proj.weight": (2 * d_inner, d_model),
            "conv1d.weight": (d_inner, 1, d_conv),
            "conv1d.bias": (d_inner,),
            "x_proj.weight": (dt_rank + 2 * d_state, d_inner),
            "dt_proj.weight": (d_inner, dt_rank),
            "dt_proj.bias": (d_inner,),
            "out_proj.weight": (d_model, d_inner),
        }
        mixer = Mamba(d_model, d_state=d_state, d_conv=d_conv, expand=expand)
        state = mixer.state_dict()
        assert {k: tuple(v.shape) for k, v in state.items()} == expected
        assert list(state) == list(expected)  # registration order too
        with_bias = Mamba(d_model, bias=True).state_dict()
        assert with_bias["in_proj.bias"].shape == (2 * d_inner,)
        assert with_bias["out_proj.bias"].shape == (d_model,)

    def test_initialisation(self):
        dt_min, dt_max = 0.002, 0.05
        mixer = Mamba(32, d_state=16, dt_min=dt_min, dt_max=dt_max)
        expected_A = torch.log(torch.arange(1, 17, dtype=torch.float32)).expand(64, 16)
        torch.testing.assert_close(mixer.A_log.detach(), expected_A)
        torch.testing.assert_close(mixer.D.detach(), torch.ones(64))
        dt = F.softplus(mixer.dt_proj.bias.detach())
        assert dt.min() >= dt_min * (1 - 1e-5)
        assert dt.max() <= dt_max * (1 + 1e-5)
        bound = mixer.dt_rank**-0.5
        assert mixer.dt_proj.weight.abs().max() <= bound
        constant = Mamba(32, dt_init="constant", dt_scale=2.0)
        torch.testing.assert_close(
            constant.dt_proj.weight.detach(), torch.full((64, 2), 2.0 * 2**-0.5)
        )
        assert mixer.A_log._no_weight_decay and mixer.D._no_weight_decay

    def test_same_seed_same_weights(self):
        torch.manual_seed(3)
        first = Mamba(16).state_dict()
        torch.manual_seed(3)
        second = Mamba(16).state_dict()
        for key in first:
            torch.testing.assert_close(first[key], second[key])

    def test_rejects_unknown_options(self):
        with pytest.raises(ValueError, match="dt_init"):
            Mamba(8, dt_init="uniform")
        with pytest.raises(ValueError, match="mamba_backend"):
            Mamba(8, mamba_backend="cuda")

    @pytest.mark.skipif(HAS_MAMBA_SSM, reason="mamba_ssm is installed here")
    def test_mamba_ssm_backend_without_the_package(self):
        with pytest.raises(ImportError, match=r"pip install sksurvfusion\[mamba\]"):
            Mamba(8, mamba_backend="mamba_ssm")
        with pytest.raises(ImportError, match="mamba_ssm"):
            FusionSurvivalNet(COLUMNS, mamba_backend="mamba_ssm")

    @pytest.mark.parametrize("shape", [(0, 5, 8), (3, 0, 8)])
    def test_empty_input(self, shape):
        x = torch.randn(*shape, requires_grad=True)
        out = Mamba(8)(x)
        assert out.shape == shape
        out.sum().backward()

    def test_auto_backend_runs_on_cpu(self):
        mixer = Mamba(8, mamba_backend="auto")
        assert mixer(torch.randn(2, 5, 8)).shape == (2, 5, 8)

    def test_import_and_cpu_use_do_not_touch_mamba_ssm(self, monkeypatch):
        attempts = []

        class RecordingFinder:
            @staticmethod
            def find_spec(name, path=None, target=None):
                if name.split(".")[0] in ("mamba_ssm", "causal_conv1d"):
                    attempts.append(name)

        # Re-import sksurvfusion.nn from scratch (restored afterwards) with every import of
        # mamba_ssm or causal_conv1d recorded.
        monkeypatch.setattr(sys, "meta_path", [RecordingFinder, *sys.meta_path])
        monkeypatch.setattr(sksurvfusion, "nn", sksurvfusion.nn)
        for name in list(sys.modules):
            if name.startswith(("sksurvfusion.nn", "mamba_ssm", "causal_conv1d")):
                monkeypatch.delitem(sys.modules, name)
        fresh = importlib.import_module("sksurvfusion.nn")
        net = fresh.FusionSurvivalNet(COLUMNS, d_model=8)
        net(torch.randn(2, N_FEATURES), torch.ones(2, 4, dtype=torch.bool)).sum().backward()
        assert fresh.scan is not scan_module  # it really was a fresh import
        assert attempts == []


class TestSelectiveScan:
    @staticmethod
    def inputs(batch, length, channels=6, d_state=4, dtype=torch.float64):
        def make(*shape, scale=1.0):
            return (torch.randn(*shape, dtype=dtype) * scale).requires_grad_()

        A = -(torch.rand(channels, d_state, dtype=dtype) * 3 + 0.1)
        return {
            "u": make(batch, length, channels),
            "delta": make(batch, length, channels, scale=0.5),
            "A": A.requires_grad_(),
            "B": make(batch, length, d_state),
            "C": make(batch, length, d_state),
            "D": make(channels),
            "z": make(batch, length, channels),
            "delta_bias": make(channels),
        }

    @pytest.mark.parametrize("length", [1, 5, 20, 300])
    @pytest.mark.parametrize("block_elements", [1, 200, 2**18])
    def test_fused_equals_loop(self, monkeypatch, length, block_elements):
        # Block sizes down to one batch row per block exercise the blocked paths.
        monkeypatch.setattr(scan_module, "_BLOCK_ELEMENTS", block_elements)
        args = self.inputs(5, length)
        fused = selective_scan(**args, delta_softplus=True)
        loop = selective_scan(**args, delta_softplus=True, method="loop")
        torch.testing.assert_close(fused, loop, atol=1e-12, rtol=1e-10)
        grad = torch.randn_like(fused)
        leaves = list(args.values())
        got = torch.autograd.grad(fused, leaves, grad)
        expected = torch.autograd.grad(loop, leaves, grad)
        for name, g, e in zip(args, got, expected, strict=True):
            torch.testing.assert_close(g, e, atol=1e-10, rtol=1e-9, msg=name)

    def test_gradcheck(self, monkeypatch):
        monkeypatch.setattr(scan_module, "_BLOCK_ELEMENTS", 2 * 4 * 6 * 4)
        args = self.inputs(3, 4)
        names = list(args)

        def run(*values):
            return selective_scan(**dict(zip(names, values, strict=True)), delta_softplus=True)

        assert torch.autograd.gradcheck(run, tuple(args.values()))

        def bare(u, delta, A, B, C):
            return selective_scan(u, delta.abs(), A, B, C)

        assert torch.autograd.gradcheck(bare, tuple(args[k] for k in "u delta A B C".split()))

    def test_threads_do_not_share_a_workspace(self, monkeypatch):
        # The fused scan reuses a per-thread workspace; concurrent calls must not mix.
        monkeypatch.setattr(scan_module, "_BLOCK_ELEMENTS", 500)
        args = self.inputs(40, 7)
        expected = selective_scan(**args, delta_softplus=True, method="loop")
        expected_grad = torch.autograd.grad(expected.sum(), args["u"])[0]
        results = {}

        def work(i):
            for _ in range(5):
                out = selective_scan(**args, delta_softplus=True)
                results[i] = (out, torch.autograd.grad(out.sum(), args["u"])[0])

        run_in_threads(work, 4)
        assert len(results) == 4
        for out, grad in results.values():
            torch.testing.assert_close(out, expected)
            torch.testing.assert_close(grad, expected_grad)

    def test_inference_needs_no_grad(self):
        args = {k: v.detach() for k, v in self.inputs(4, 6).items()}
        expected = selective_scan(**args, delta_softplus=True, method="loop")
        with torch.no_grad():
            torch.testing.assert_close(selective_scan(**args, delta_softplus=True), expected)
        with torch.inference_mode():
            torch.testing.assert_close(selective_scan(**args, delta_softplus=True), expected)
        # and the workspace made under inference mode does not leak out of it
        args = self.inputs(4, 6)
        selective_scan(**args, delta_softplus=True).sum().backward()

    def test_large_step_sizes_stay_finite(self):
        # exp(delta A) underflows; the result must be finite and the state forgotten.
        args = {k: v.detach().float() for k, v in self.inputs(2, 6).items()}
        args["delta"] = torch.full_like(args["delta"], 500.0)
        out = selective_scan(**args)
        assert torch.isfinite(out).all()
        assert_close_to_scale(out, selective_scan(**args, method="loop"))

    @pytest.mark.parametrize(("length", "width"), [(1, 4), (3, 4), (6, 2), (5, 1)])
    def test_causal_conv_matches_conv1d(self, length, width):
        x = torch.randn(3, length, 5, dtype=torch.float64, requires_grad=True)
        weight = torch.randn(5, width, dtype=torch.float64, requires_grad=True)
        bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
        padded = F.conv1d(x.transpose(1, 2), weight[:, None], bias, padding=width - 1, groups=5)
        expected = F.silu(padded[..., :length].transpose(1, 2))
        torch.testing.assert_close(causal_conv1d_silu(x, weight, bias), expected)
        assert torch.autograd.gradcheck(causal_conv1d_silu, (x, weight, bias))
        assert torch.autograd.gradcheck(causal_conv1d_silu, (x, weight, None))


# ----------------------------------------------------------------------------------------
# Encoders
# ----------------------------------------------------------------------------------------


class TestEncoders:
    def test_shared_encoder_has_one_weight_set(self):
        separate = ModalityTokenizer(COLUMNS, 8, hidden=16)
        shared = ModalityTokenizer(COLUMNS, 8, hidden=16, encoder_groups=[[0, 2]])
        assert len(separate.encoders) == 4
        assert len(shared.encoders) == 3
        assert shared.groups == [[0, 2], [1], [3]]
        per_encoder = sum(
            p.numel() for p in ModalityEncoder([COLUMNS[0]], 8, hidden=16).parameters()
        )
        n_separate = sum(p.numel() for p in separate.parameters())
        n_shared = sum(p.numel() for p in shared.parameters())
        assert n_separate - n_shared == per_encoder

    @pytest.mark.parametrize("bias", [True, False])
    @pytest.mark.parametrize("rows", [5, 200])
    def test_consecutive_group_read_in_place_equals_the_mlp(self, bias, rows):
        # A group in consecutive columns is read as a strided view by one batched product
        # (without gradients, or from _IN_PLACE_MIN_ROWS rows with them); outputs and
        # gradients equal those of the MLP on a copy of the columns.
        from sksurvfusion.nn.encoders import _IN_PLACE_MIN_ROWS

        assert 5 < _IN_PLACE_MIN_ROWS <= 200
        encoder = ModalityEncoder([range(0, 6), range(6, 12), range(12, 18)], 8, hidden=16)
        if not bias:
            encoder.mlp[0].bias = None
        encoder = encoder.double().eval()
        x = torch.randn(rows, 20, dtype=torch.float64)
        copied = x[:, :18].reshape(rows, 3, 6).clone()
        weight = torch.randn(rows, 3, 8, dtype=torch.float64)
        with torch.no_grad():
            assert_close_to_scale(encoder(x), encoder.mlp(copied))
        out = encoder(x)
        grads = torch.autograd.grad(out, list(encoder.parameters()), weight)
        expected = torch.autograd.grad(encoder.mlp(copied), list(encoder.parameters()), weight)
        assert_close_to_scale(out.detach(), encoder.mlp(copied).detach())
        for got, want in zip(grads, expected, strict=True):
            assert_close_to_scale(got, want)

    def test_group_encoding_equals_encoding_each_modality(self):
        tokenizer = ModalityTokenizer(COLUMNS, 8, hidden=16, encoder_groups=[[2, 0]]).eval()
        x = torch.randn(5, N_FEATURES)
        mask = torch.ones(5, 4, dtype=torch.bool)
        tokens, _ = tokenizer(x, mask)
        shared = tokenizer.encoders[0].mlp
        for i in (0, 2):
            expected = shared(x[:, COLUMNS[i]]) + tokenizer.modality_embedding[i]
            assert_close_to_scale(tokens[:, i], expected)  # one batched product against two
        own = tokenizer.encoders[1].mlp
        assert_close_to_scale(tokens[:, 1], own(x[:, COLUMNS[1]]) + tokenizer.modality_embedding[1])

    @pytest.mark.parametrize(
        ("columns", "reads_a_slice"),
        [
            ([[0, 1, 2], [3, 4, 5]], True),  # side by side: one slice of x
            ([[6, 7, 8], [3, 4, 5]], False),  # out of order: a gather
            ([[0, 2, 4], [6, 8, 10]], False),  # strided: a gather
        ],
    )
    def test_slice_and_gather_read_the_same_values(self, columns, reads_a_slice):
        encoder = ModalityEncoder(columns, 4, hidden=8).eval()
        assert (encoder._block is not None) == reads_a_slice
        x = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
        encoder.double()
        present = torch.tensor([[True, False]] * 5)
        expected = torch.stack(
            [encoder.mlp(x[:, cols] * present[:, [i]]) for i, cols in enumerate(columns)], 1
        )
        tokens = encoder(x, present)
        torch.testing.assert_close(tokens, expected)
        (grad,) = torch.autograd.grad(tokens.sum(), x)
        (expected_grad,) = torch.autograd.grad(expected.sum(), x)
        torch.testing.assert_close(grad, expected_grad)

    def test_missing_modality_is_mask_token(self):
        tokenizer = ModalityTokenizer(COLUMNS, 8, hidden=16).eval()
        x = torch.randn(3, N_FEATURES)
        mask = torch.tensor([[True, False, True, True]] * 3)
        tokens, _ = tokenizer(x, mask)
        expected = tokenizer.mask_token + tokenizer.modality_embedding[1]
        torch.testing.assert_close(tokens[:, 1], expected.expand(3, 8))

    def test_unequal_widths_in_a_group(self):
        with pytest.raises(ValueError, match=r"modality 0: 3 columns, modality 1: 4 columns"):
            ModalityTokenizer(COLUMNS, 8, encoder_groups=[[0, 1]])
        with pytest.raises(ValueError, match="equal widths"):
            ModalityEncoder([[0, 1], [2]], 8)

    def test_modality_dropout_keeps_one_and_respects_mask(self):
        tokenizer = ModalityTokenizer(COLUMNS, 8, modality_dropout=0.9)
        mask = random_mask(2000, p_missing=0.3)
        dropped = tokenizer.drop_modalities(mask)
        assert not (dropped & ~mask).any()
        assert dropped.any(dim=1).all()
        single = torch.zeros(50, 4, dtype=torch.bool)
        single[:, 2] = True
        assert torch.equal(tokenizer.drop_modalities(single), single)

    def test_modality_dropout_rate(self):
        tokenizer = ModalityTokenizer(COLUMNS, 8, modality_dropout=0.25)
        mask = torch.ones(4000, 4, dtype=torch.bool)
        kept = tokenizer.drop_modalities(mask).float().mean().item()
        # P(drop) = 0.25, except that all four dropped (p = 0.25**4) keeps one.
        assert kept == pytest.approx(0.75 + 0.25**4 / 4, abs=0.02)

    def test_modality_dropout_only_in_training(self):
        tokenizer = ModalityTokenizer(COLUMNS, 8, modality_dropout=0.9)
        x, mask = torch.randn(64, N_FEATURES), torch.ones(64, 4, dtype=torch.bool)
        assert not torch.equal(tokenizer.train()(x, mask)[1], mask)
        assert torch.equal(tokenizer.eval()(x, mask)[1], mask)


# ----------------------------------------------------------------------------------------
# Adapters and network
# ----------------------------------------------------------------------------------------


def test_pool_tokens():
    sequence = torch.arange(12.0).view(1, 4, 3).expand(2, 4, 3)
    mask = torch.tensor([[True, False, True, False], [False, True, False, False]])
    torch.testing.assert_close(
        pool_tokens(sequence, mask, "mean"), torch.tensor([[3.0, 4, 5], [3, 4, 5]])
    )
    torch.testing.assert_close(
        pool_tokens(sequence, mask, "last"), torch.tensor([[6.0, 7, 8], [3, 4, 5]])
    )


class TestFusionSurvivalNet:
    @pytest.mark.parametrize("adapter", ADAPTERS)
    @pytest.mark.parametrize("pooling", POOLINGS)
    @pytest.mark.parametrize("fill", [float("nan"), 1e30, -1e30])
    @pytest.mark.parametrize("linear_term", [False, True])
    def test_masked_modalities_cannot_change_output(self, adapter, pooling, fill, linear_term):
        net = small_net(
            adapter,
            pooling=pooling,
            encoder_groups=[[0, 2]],
            dropout=0.1,
            linear_term=linear_term,
        )
        if linear_term:  # away from zero, where a finite fill would vanish
            randomise(net.linear)
        x, mask = torch.randn(16, N_FEATURES), random_mask(16)
        changed = x.clone()
        for i, cols in enumerate(COLUMNS):
            changed[~mask[:, i]] = changed[~mask[:, i]].index_fill(1, torch.tensor(cols), fill)
        net.eval()
        torch.testing.assert_close(net(changed, mask), net(x, mask))
        torch.testing.assert_close(net.embed(changed, mask), net.embed(x, mask))
        # Nor can they reach the gradients (torch.where before any arithmetic).
        net.train()
        net(changed, mask).sum().backward()
        for name, param in net.named_parameters():
            assert param.grad is None or torch.isfinite(param.grad).all(), name

    def test_bidirectional_mamba_is_invariant_too(self):
        net = small_net(bidirectional=True, pooling="last").eval()
        x, mask = torch.randn(8, N_FEATURES), random_mask(8)
        changed = torch.where(torch.repeat_interleave(mask, torch.tensor(WIDTHS), 1), x, 7.0)
        torch.testing.assert_close(net(changed, mask), net(x, mask))
        n_one_way = sum(p.numel() for p in small_net().adapter.parameters())
        n_two_way = sum(p.numel() for p in net.adapter.parameters())
        assert n_two_way == 2 * n_one_way

    @pytest.mark.parametrize("adapter", ADAPTERS)
    def test_shapes_and_bound(self, adapter):
        net = small_net(adapter, risk_bound=0.5).eval()
        x, mask = torch.randn(10, N_FEATURES), random_mask(10)
        with torch.no_grad():
            net.head.weight.mul_(100)
        assert net(x, mask).shape == (10,)
        assert net.embed(x, mask).shape == (10, 8)
        assert net(x, mask).abs().max() <= 0.5
        net.risk_bound = None
        torch.testing.assert_close(net(x, mask), net.head(net.embed(x, mask)).squeeze(-1))

    def test_linear_term_adds_coefficients_of_present_modalities(self):
        plain = small_net(risk_bound=2.0).eval()
        torch.manual_seed(0)
        net = small_net(risk_bound=2.0, linear_term=True).eval()
        x, mask = torch.randn(16, N_FEATURES), random_mask(16)
        # zero coefficients at the start: the network without the term, weight for weight
        torch.testing.assert_close(net(x, mask), plain(x, mask))
        beta = torch.randn(N_FEATURES)
        with torch.no_grad():
            net.linear.weight.copy_(beta)
        present = torch.repeat_interleave(mask, torch.tensor(WIDTHS), dim=1)
        by_hand = 10.0 * (torch.where(present, x, 0.0) * beta).sum(1)
        z = plain.head(plain.embed(x, mask)).squeeze(-1)
        assert_close_to_scale(net(x, mask), 2.0 * torch.tanh((z + by_hand) / 2.0))
        assert [name for name, _ in net.named_parameters()][-1] == "linear.weight"

    @pytest.mark.parametrize("adapter", ADAPTERS)
    def test_batch_without_missing_modalities_skips_masking_exactly(self, adapter, monkeypatch):
        net = small_net(adapter, encoder_groups=[[0, 2]], linear_term=True)
        randomise(net)
        x, mask = torch.randn(8, N_FEATURES), torch.ones(8, N_MODALITIES, dtype=torch.bool)
        net.train()
        torch.manual_seed(2)
        dense = net(x, mask)
        dense.sum().backward()
        dense_grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
        net.zero_grad()
        monkeypatch.setattr(encoders_module, "_all_present", lambda mask: False)
        torch.manual_seed(2)
        masked = net(x, mask)
        masked.sum().backward()
        torch.testing.assert_close(dense, masked)
        for name, param in net.named_parameters():
            if name == "tokenizer.mask_token":
                assert not param.grad.any()  # used by no row
            else:
                torch.testing.assert_close(dense_grads[name], param.grad, msg=name)

    def test_linear_term_follows_modality_dropout(self):
        net = small_net(modality_dropout=0.5, dropout=0.0, linear_term=True, risk_bound=None)
        with torch.no_grad():
            net.head.weight.zero_()
            net.head.bias.zero_()
            net.linear.weight.copy_(torch.randn(N_FEATURES))
        x, mask = torch.randn(32, N_FEATURES), torch.ones(32, N_MODALITIES, dtype=torch.bool)
        torch.manual_seed(1)
        risk = net.train()(x, mask)
        torch.manual_seed(1)
        _, kept = net.tokenizer(x, mask)  # the same draws of the dropout
        assert not kept.all()
        torch.testing.assert_close(risk, net.linear(x, kept))

    def test_modality_linear_gain_shrinks_with_width(self):
        assert ModalityLinear([list(range(20)), [20, 21]]).gain == 10.0
        assert ModalityLinear([list(range(32))]).gain == 10.0
        assert ModalityLinear([list(range(64)), list(range(64, 128))]).gain == 2.5

    def test_modality_linear_reads_gathered_columns(self):
        # columns out of order: read by an index gather instead of a slice
        columns = [[4, 0], [2]]
        linear = ModalityLinear(columns, gain=2.0)
        assert linear._block is None
        with torch.no_grad():
            linear.weight.copy_(torch.tensor([1.0, -1.0, 3.0]))
        x = torch.arange(15.0).reshape(3, 5)
        mask = torch.tensor([[True, True], [True, False], [False, True]])
        expected = 2.0 * torch.stack(
            [x[0, 4] - x[0, 0] + 3 * x[0, 2], x[1, 4] - x[1, 0], 3 * x[2, 2]]
        )
        torch.testing.assert_close(linear(x, mask), expected)
        with pytest.raises(ValueError, match="gain"):
            ModalityLinear(columns, gain=0.0)

    def test_all_modalities_missing_stays_finite(self):
        for adapter in ADAPTERS:
            net = small_net(adapter).eval()
            out = net(torch.randn(3, N_FEATURES), torch.zeros(3, 4, dtype=torch.bool))
            assert torch.isfinite(out).all(), adapter

    @pytest.mark.parametrize("adapter", ADAPTERS)
    def test_training_lowers_cox_loss(self, adapter):
        n = 64
        x, mask = torch.randn(n, N_FEATURES), random_mask(n, p_missing=0.2)
        signal = x[:, 0] * mask[:, 0] - x[:, 3] * mask[:, 1] + x[:, 7] * x[:, 8] * mask[:, 2]
        time = torch.distributions.Exponential(torch.exp(signal)).sample()
        event = torch.rand(n) < 0.8
        net = small_net(adapter, dropout=0.0, encoder_groups=[[0, 2]])
        optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)

        def loss():
            return cox_partial_likelihood(net(x, mask), time, event)

        with torch.no_grad():
            before = loss().item()
        for _ in range(20):
            optimiser.zero_grad()
            value = loss()
            value.backward()
            optimiser.step()
        with torch.no_grad():
            after = loss().item()
        assert after < before - 0.05

    def test_state_dict_round_trip(self, tmp_path):
        net = small_net(encoder_groups=[[0, 2]])
        path = tmp_path / "net.pt"
        torch.save(net.state_dict(), path)
        state = torch.load(path, weights_only=True)
        assert "tokenizer.encoders.0.columns" in state  # columns travel as buffers
        clone = small_net(encoder_groups=[[0, 2]])
        clone.load_state_dict(state)
        x, mask = torch.randn(4, N_FEATURES), random_mask(4)
        torch.testing.assert_close(clone.eval()(x, mask), net.eval()(x, mask))
        buffers = dict(net.named_buffers())
        assert torch.equal(
            buffers["tokenizer.encoders.0.columns"], torch.tensor([COLUMNS[0], COLUMNS[2]])
        )

    def test_empty_batch(self):
        for adapter in ADAPTERS:
            net = small_net(adapter)
            assert net(torch.randn(0, N_FEATURES), torch.ones(0, 4, dtype=torch.bool)).shape == (0,)

    def test_float64_input_and_non_bool_mask(self):
        net = small_net().eval()
        x, mask = torch.randn(4, N_FEATURES), random_mask(4)
        torch.testing.assert_close(net(x.double(), mask.float()), net(x, mask))

    def test_rejects_wrong_mask_shape(self):
        with pytest.raises(ValueError, match="mask of shape"):
            small_net()(torch.randn(4, N_FEATURES), torch.ones(4, 3, dtype=torch.bool))

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"adapter": "gru"}, "adapter"),
            ({"d_model": 0}, "d_model"),
            ({"n_layers": -1}, "n_layers"),
            ({"d_state": 2.5}, "d_state"),
            ({"d_conv": 0}, "d_conv"),
            ({"expand": 0}, "expand"),
            ({"n_heads": 0}, "n_heads"),
            ({"encoder_hidden": True}, "encoder_hidden"),
            ({"dropout": 1.0}, "dropout"),
            ({"dropout": -0.1}, "dropout"),
            ({"modality_dropout": 1.5}, "modality_dropout"),
            ({"pooling": "max"}, "pooling"),
            ({"risk_bound": 0}, "risk_bound"),
            ({"risk_bound": -1.0}, "risk_bound"),
            ({"mamba_backend": "triton"}, "mamba_backend"),
            ({"encoder_groups": [[0, 4]]}, "encoder_groups"),
            ({"encoder_groups": [[0, 2], [2]]}, "modality 2 is listed in"),
            ({"encoder_groups": [[]]}, "empty"),
            ({"encoder_groups": [[True]]}, "encoder_groups"),
            ({"adapter": "transformer", "d_model": 6, "n_heads": 4}, "n_heads=4 must divide"),
        ],
    )
    def test_validation(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            FusionSurvivalNet(COLUMNS, **kwargs)

    def test_validation_of_columns(self):
        with pytest.raises(ValueError, match="at least one modality"):
            FusionSurvivalNet([])
        with pytest.raises(ValueError, match="modality 1"):
            FusionSurvivalNet([[0, 1], []])

    def test_n_heads_need_not_divide_for_other_adapters(self):
        FusionSurvivalNet(COLUMNS, adapter="mamba", d_model=6, n_heads=4)


class TestAdapters:
    def test_interface(self):
        tokens, mask = torch.randn(3, 4, 8), random_mask(3)
        adapters = [
            MambaAdapter(8, n_layers=1, d_state=4),
            TransformerAdapter(8, n_layers=1, n_heads=2),
            MLPAdapter(8, n_tokens=4),
        ]
        for adapter in adapters:
            assert adapter(tokens, mask).shape == (3, 8)

    def test_mamba_last_pooling_reads_only_up_to_last_present_token(self):
        adapter = MambaAdapter(8, n_layers=1, d_state=4, pooling="last").eval()
        tokens = torch.randn(2, 5, 8)
        mask = torch.tensor([[True, True, True, False, False]] * 2)
        changed = tokens.clone()
        changed[:, 3:] = 5.0
        torch.testing.assert_close(adapter(changed, mask), adapter(tokens, mask))

    def test_transformer_ignores_padded_tokens(self):
        adapter = TransformerAdapter(8, n_layers=2, n_heads=2).eval()
        tokens, mask = torch.randn(4, 5, 8), random_mask(4, n_modalities=5)
        changed = torch.where(mask.unsqueeze(-1), tokens, 3.0)
        torch.testing.assert_close(adapter(changed, mask), adapter(tokens, mask))

    @pytest.mark.parametrize("pooling", POOLINGS)
    @pytest.mark.parametrize("train", [False, True])
    def test_transformer_equals_torchs_encoder(self, pooling, train):
        # The forward pass is written out (for dropout from a generator); its parameters
        # are a torch TransformerEncoder's, and without dropout the outputs are that
        # module's, gradients included.
        adapter = TransformerAdapter(8, n_layers=2, n_heads=2, dropout=0.0, pooling=pooling)
        randomise(adapter)
        adapter.train(train)
        tokens = torch.randn(6, 5, 8, dtype=torch.float64, requires_grad=True)
        adapter.double()
        mask = random_mask(6, n_modalities=5)
        mask[0] = False  # nothing present: attends to its mask tokens
        padding = ~mask & mask.any(dim=1, keepdim=True)
        ours = adapter(tokens, mask)
        expected = pool_tokens(adapter.encoder(tokens, src_key_padding_mask=padding), mask, pooling)
        torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)
        weights = torch.randn_like(ours)
        got = torch.autograd.grad(ours, [tokens, *adapter.parameters()], weights)
        want = torch.autograd.grad(expected, [tokens, *adapter.parameters()], weights)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-12)


class TestGenerators:
    """Every draw of a training can come from a generator of its own."""

    @pytest.mark.parametrize("adapter", ADAPTERS)
    def test_construction_draws_from_the_given_generator(self, adapter):
        state = torch.get_rng_state()
        with draws_from(torch.Generator().manual_seed(7)):
            routed = small_net(adapter, bidirectional=adapter == "mamba", linear_term=True)
        assert torch.equal(torch.get_rng_state(), state)  # the global stream was not used
        # a CPU generator seeded alike gives torch's own stream: the same weights as a
        # construction from the global generator
        torch.manual_seed(7)
        plain = small_net(adapter, bidirectional=adapter == "mamba", linear_term=True)
        for (name, value), expected in zip(
            routed.state_dict().items(), plain.state_dict().values(), strict=True
        ):
            assert torch.equal(value, expected), name

    def test_dropout_from_a_generator_is_torchs_dropout_without_one(self):
        x = torch.randn(64, 32, requires_grad=True)
        dropout = Dropout(0.3)
        torch.manual_seed(3)
        expected = F.dropout(x, 0.3, training=True)
        torch.manual_seed(3)
        assert torch.equal(dropout(x), expected)  # no generator: torch's own
        dropout.generator = torch.Generator().manual_seed(3)
        state = torch.get_rng_state()
        first = dropout(x)
        assert torch.equal(torch.get_rng_state(), state)
        dropout.generator = torch.Generator().manual_seed(3)
        assert torch.equal(dropout(x), first)
        kept = first != 0
        assert 0.6 < kept.float().mean() < 0.8
        torch.testing.assert_close(first[kept], x[kept] / 0.7)
        (grad,) = torch.autograd.grad(first.sum(), x)
        torch.testing.assert_close(grad, kept / 0.7)
        assert torch.equal(dropout.eval()(x), x)

    @pytest.mark.parametrize("adapter", ADAPTERS)
    def test_training_step_draws_only_from_the_generator(self, adapter):
        net = small_net(adapter, dropout=0.5, modality_dropout=0.5).train()
        x, mask = torch.randn(32, N_FEATURES), random_mask(32)
        outputs = []
        for _ in range(2):
            set_generator(net, torch.Generator().manual_seed(11))
            state = torch.get_rng_state()
            outputs.append(net(x, mask))
            assert torch.equal(torch.get_rng_state(), state)
        assert torch.equal(outputs[0], outputs[1])
        set_generator(net, torch.Generator().manual_seed(12))
        assert not torch.equal(net(x, mask), outputs[0])
        set_generator(net, None)
        assert all(getattr(m, "generator", None) is None for m in net.modules())
