"""Tests of minilib.diffusion (chapter 15): schedules, the forward process, the U-Net and its
conditioning, the loss, the DDPM/DDIM samplers, guidance, the Fréchet distance and slerp."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from minilib import diffusion as D


# ---------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("make", [D.linear_schedule, D.cosine_schedule])
def test_schedule_alpha_bar_decreases_from_one_to_about_zero(make):
    s = make(200)
    ab = s.alpha_bar
    assert s.T == len(s) == 200 and ab.dtype == torch.float64
    assert bool((ab[1:] < ab[:-1]).all()), "alpha_bar must fall at every step"
    assert 0.99 < float(ab[0]) <= 1.0
    assert float(ab[-1]) < 1e-3  # at T the image is (almost) pure noise
    assert torch.allclose(s.alphas, 1 - s.betas)


def test_linear_schedule_matches_ddpm_at_t_1000():
    s = D.linear_schedule(1000)
    assert math.isclose(float(s.betas[0]), 1e-4) and math.isclose(float(s.betas[-1]), 0.02)
    # Ho et al.: alpha_bar_T ~ 4e-5 for the linear schedule with T = 1000.
    assert 1e-5 < float(s.alpha_bar[-1]) < 1e-4


def test_cosine_schedule_follows_cos_squared():
    T, s_ = 100, 0.008
    s = D.cosine_schedule(T)
    u = torch.arange(1, T + 1, dtype=torch.float64) / T
    f = lambda v: torch.cos((v + s_) / (1 + s_) * math.pi / 2) ** 2  # noqa: E731
    expected = f(u) / f(torch.tensor(0.0, dtype=torch.float64))
    # Equal wherever the max_beta clip is inactive (all but the very last step).
    assert torch.allclose(s.alpha_bar[:-1], expected[:-1], rtol=1e-10)
    assert float(s.alpha_bar[-1]) < 1e-6


def test_schedule_bad_input():
    with pytest.raises(ValueError, match="T must be"):
        D.linear_schedule(1)
    with pytest.raises(ValueError, match="larger T"):
        D.linear_schedule(10)  # rescaled beta_end = 2
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        D.Schedule(torch.tensor([0.1, 1.0], dtype=torch.float64))


# ---------------------------------------------------------------------------- forward process
def test_iterated_forward_steps_match_the_closed_form_in_distribution():
    torch.manual_seed(0)
    s = D.cosine_schedule(50)
    x0 = torch.tensor([0.8, -0.5, 0.0]).repeat(20000, 1)[:, :, None, None]  # (n, 3, 1, 1)
    x = x0
    checks = {}
    for t in range(s.T):
        x = D.q_step(x, t, torch.randn_like(x), s)
        if t in (0, 9, 29, 49):
            checks[t] = x.clone()
    for t, xt in checks.items():
        ab = float(s.alpha_bar[t])
        mean, var = xt.mean(0).flatten(), xt.var(0).flatten()
        assert torch.allclose(mean, math.sqrt(ab) * x0[0].flatten(), atol=0.03), t
        assert torch.allclose(var, torch.full((3,), 1 - ab), atol=0.03), t


def test_q_sample_closed_form_and_per_image_steps():
    s = D.linear_schedule(100)
    x0, noise = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 10, 50, 99])
    xt = D.q_sample(x0, t, noise, s)
    for i in range(4):
        ab = s.alpha_bar[t[i]].float()
        torch.testing.assert_close(xt[i], ab.sqrt() * x0[i] + (1 - ab).sqrt() * noise[i])
    assert torch.equal(D.q_sample(x0, 5, noise, s), D.q_sample(x0, torch.full((4,), 5), noise, s))


def test_q_sample_bad_input():
    s = D.linear_schedule(100)
    x0 = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="randn_like"):
        D.q_sample(x0, 0, torch.zeros(2, 3, 4, 5), s)
    with pytest.raises(ValueError, match=r"\[0, T=100\)"):
        D.q_sample(x0, 100, torch.zeros_like(x0), s)
    with pytest.raises(ValueError, match="one time step per image"):
        D.q_sample(x0, torch.tensor([1, 2, 3]), torch.zeros_like(x0), s)


def test_timestep_embedding_is_chapter_05_table():
    from minilib.positions import sinusoidal
    t = torch.arange(7)
    torch.testing.assert_close(D.timestep_embedding(t, 16), sinusoidal(7, 16))


# ---------------------------------------------------------------------------- U-Net
def _tiny(**kw):
    torch.manual_seed(0)
    return D.UNet(in_ch=3, base=8, mults=(1, 2), **kw)


def test_unet_shapes_and_zero_init():
    net = _tiny()
    x = torch.randn(2, 3, 8, 8)
    out = net(x, torch.tensor([3, 7]))
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # the zero-initialised last conv: eps_hat = 0 at the start
    assert net.features(x, 3).shape == (2, 16 + 16 + 8)  # middle + two decoder levels


def test_unet_class_conditioning_and_drop():
    net = _tiny(num_classes=5)
    torch.nn.init.normal_(net.out.weight)  # make the output depend on the input
    x, t = torch.randn(3, 3, 8, 8), torch.tensor([1, 2, 3])
    a = net(x, t, cond=torch.tensor([0, 1, 2]))
    b = net(x, t, cond=torch.tensor([4, 1, 2]))
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1:], b[1:])
    # A dropped row is exactly the unconditional prediction.
    u = net(x, t)
    d = net(x, t, cond=torch.tensor([0, 1, 2]), drop=torch.tensor([True, False, True]))
    assert torch.allclose(d[0], u[0]) and torch.allclose(d[2], u[2]) and torch.allclose(d[1], a[1])
    with pytest.raises(ValueError, match="class ids"):
        net(x, t, cond=torch.tensor([0, 1, 5]))
    with pytest.raises(ValueError, match="LongTensor"):
        net(x, t, cond=torch.randn(3))


def test_unet_vector_and_context_conditioning():
    net = _tiny(cond_dim=6, context_dim=10)
    torch.nn.init.normal_(net.out.weight)
    torch.nn.init.normal_(net.mid_attn.out.weight)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([4, 9])
    v, ctx = torch.randn(2, 6), torch.randn(2, 5, 10)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out = net(x, t, cond=v, context=ctx, context_mask=mask)
    # Padding is invisible: changing masked-out tokens changes nothing.
    ctx2 = ctx.clone()
    ctx2[0, 3:] = 100.0
    torch.testing.assert_close(net(x, t, cond=v, context=ctx2, context_mask=mask)[0], out[0])
    # Dropping both conditions equals passing none.
    torch.testing.assert_close(net(x, t, cond=v, context=ctx, context_mask=mask, drop=torch.tensor([True, True])),
                               net(x, t))
    with pytest.raises(ValueError, match=r"\(2, L, 10\)"):
        net(x, t, context=torch.randn(2, 5, 9))
    with pytest.raises(ValueError, match=r"\(2, 6\)"):
        net(x, t, cond=torch.randn(2, 7))


def test_unet_bad_input():
    net = _tiny()
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.randn(1, 3, 7, 8), 0)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.randn(1, 1, 8, 8), 0)
    with pytest.raises(ValueError, match="takes no cond"):
        net(torch.randn(1, 3, 8, 8), 0, cond=torch.tensor([1]))
    with pytest.raises(ValueError, match="takes no context"):
        net(torch.randn(1, 3, 8, 8), 0, context=torch.randn(1, 2, 4))


# ---------------------------------------------------------------------------- loss and training
def test_diffusion_loss_starts_near_one_and_falls():
    torch.manual_seed(0)
    s = D.cosine_schedule(100)
    net = _tiny(num_classes=2)
    # Two "images": a bright left half or a bright right half.
    x0 = -torch.ones(64, 3, 8, 8)
    y = torch.arange(64) % 2
    x0[y == 0, :, :, :4] = 1
    x0[y == 1, :, :, 4:] = 1
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    first = D.diffusion_loss(net, x0, s, cond=y, p_uncond=0.1, generator=g).item()
    assert 0.9 < first < 1.1  # eps_hat = 0 at init: the loss is E[eps^2] = 1
    losses = []
    for _ in range(60):
        loss = D.diffusion_loss(net, x0, s, cond=y, p_uncond=0.1, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.6 * first
    with pytest.raises(ValueError, match="p_uncond"):
        D.diffusion_loss(net, x0, s, cond=y, p_uncond=1.0)


# ---------------------------------------------------------------------------- samplers
class Oracle(torch.nn.Module):
    """An eps-model that knows the clean image x0: eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)."""

    def __init__(self, x0, schedule):
        super().__init__()
        self.x0, self.ab = x0, schedule.alpha_bar.float()
        self.w = torch.nn.Parameter(torch.zeros(()))  # samplers read the device from a parameter

    def forward(self, x, t, cond=None, context=None, context_mask=None, drop=None):
        ab = self.ab[t].view(-1, 1, 1, 1)
        return (x - ab.sqrt() * self.x0[: x.shape[0]]) / (1 - ab).sqrt()


@pytest.mark.parametrize("steps", [None, 10, 1])
def test_ddim_eta0_with_an_oracle_returns_x0(steps):
    s = D.linear_schedule(100)
    x0 = torch.rand(3, 3, 4, 4) * 2 - 1
    out = D.ddim_sample(Oracle(x0, s), x0.shape, s, steps=steps, generator=torch.Generator().manual_seed(0))
    # One step from t = T-1 divides by sqrt(abar) ~ 0.006: float32 rounding grows 160-fold.
    torch.testing.assert_close(out, x0, atol=1e-4 if steps == 1 else 1e-5, rtol=0)


def test_ddpm_with_an_oracle_returns_x0():
    s = D.cosine_schedule(50)
    x0 = torch.rand(2, 3, 4, 4) * 2 - 1
    out = D.ddpm_sample(Oracle(x0, s), x0.shape, s, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_ddpm_is_ddim_with_eta_one_and_samplers_are_deterministic():
    torch.manual_seed(0)
    s = D.cosine_schedule(40)
    net = _tiny(num_classes=3)
    torch.nn.init.normal_(net.out.weight, std=0.1)
    y = torch.tensor([0, 2])
    kw = dict(steps=8, cond=y, guidance=2.0)
    a = D.ddpm_sample(net, (2, 3, 8, 8), s, generator=torch.Generator().manual_seed(3), **kw)
    b = D.ddim_sample(net, (2, 3, 8, 8), s, eta=1.0, generator=torch.Generator().manual_seed(3), **kw)
    c = D.ddpm_sample(net, (2, 3, 8, 8), s, generator=torch.Generator().manual_seed(3), **kw)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert torch.equal(a, c) and a.shape == (2, 3, 8, 8) and a.dtype == torch.float32
    # DDIM with eta = 0 draws no noise after x_T: the same starting noise gives the same image.
    x_T = torch.randn(2, 3, 8, 8)
    d1 = D.ddim_sample(net, x_T.shape, s, steps=8, noise=x_T, cond=y)
    d2 = D.ddim_sample(net, x_T.shape, s, steps=8, noise=x_T, cond=y, generator=torch.Generator().manual_seed(9))
    assert torch.equal(d1, d2)
    assert net.training  # the samplers restore the mode they found


def test_guidance_formula():
    net = _tiny(num_classes=3)
    torch.nn.init.normal_(net.out.weight)
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([5, 5]), torch.tensor([1, 2])
    c, u = net(x, t, cond=y), net(x, t)
    torch.testing.assert_close(D.guided_eps(net, x, t, cond=y, guidance=3.0), u + 3.0 * (c - u), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(D.guided_eps(net, x, t, cond=y, guidance=0.0), u, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(D.guided_eps(net, x, t, cond=y, guidance=1.0), c)


def test_sampler_bad_input():
    s = D.linear_schedule(20, beta_end=0.01)
    net = _tiny(num_classes=3)
    with pytest.raises(ValueError, match=r"steps=30 must be an int in \[1, T=20\]"):
        D.ddim_sample(net, (1, 3, 8, 8), s, steps=30)
    with pytest.raises(ValueError, match="needs a condition"):
        D.ddpm_sample(net, (1, 3, 8, 8), s, steps=2, guidance=2.0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        D.ddim_sample(net, (3, 8, 8), s, steps=2)
    with pytest.raises(ValueError, match="one per image"):
        D.ddim_sample(net, (2, 3, 8, 8), s, steps=2, cond=torch.tensor([1]))
    with pytest.raises(ValueError, match="eta"):
        D.ddim_sample(net, (1, 3, 8, 8), s, steps=2, eta=1.5)


def test_sample_timesteps():
    assert D.sample_timesteps(10, 10) == list(range(9, -1, -1))
    assert D.sample_timesteps(100, 5) == [99, 74, 50, 25, 0]
    assert D.sample_timesteps(100, 1) == [99]


# ---------------------------------------------------------------------------- scoring, helpers
def test_frechet_distance_closed_form_gaussians():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200_000, 2))
    b = rng.standard_normal((200_000, 2)) * 2 + np.array([3.0, 0.0])
    # N(0, I) vs N(m, 4I): |m|^2 + tr(I + 4I - 2 * 2I) = 9 + 2.
    assert abs(D.frechet_distance(a, b) - 11.0) < 0.1
    assert abs(D.frechet_distance(a, a)) < 1e-8


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 5))
    b = rng.standard_normal((400, 5)) @ rng.standard_normal((5, 5)) + 1
    Sa, Sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(Sa + Sb - 2 * scipy.linalg.sqrtm(Sa @ Sb).real)
    assert math.isclose(D.frechet_distance(torch.tensor(a), b), ref, rel_tol=1e-8)
    with pytest.raises(ValueError, match="same d"):
        D.frechet_distance(a, b[:, :4])
    with pytest.raises(ValueError, match="at least 2 rows"):
        D.frechet_distance(a[:1], b)


def test_attribute_cnn():
    torch.manual_seed(0)
    net = D.AttributeCNN({"shape": 4, "colour": 3}, width=8)
    out = net(torch.randn(5, 3, 16, 16))
    assert out["shape"].shape == (5, 4) and out["colour"].shape == (5, 3)
    assert net.features(torch.randn(5, 3, 16, 16)).shape == (5, 32)
    with pytest.raises(ValueError, match="heads is empty"):
        D.AttributeCNN({})


def test_slerp_stays_on_the_sphere():
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    path = D.slerp(a, b, torch.linspace(0, 1, 5))
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    torch.testing.assert_close(path.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(path[2], torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2))
    torch.testing.assert_close(D.slerp(a, 2 * a, [0.5]), 1.5 * a[None])  # parallel: a straight line
    with pytest.raises(ValueError, match="same size"):
        D.slerp(a, b[:2], [0.5])


def test_image_range_round_trip():
    x = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(D.to_image(D.from_image(x)), x)


def test_image_grid():
    imgs = torch.zeros(5, 3, 2, 2)
    imgs[4] = 0.5
    g = D.image_grid(imgs, nrow=3)
    assert g.shape == (2 * 3 - 1, 3 * 3 - 1, 3)
    assert (g[3:5, 3:5] == 0.5).all() and (g[3:5, 6:8] == 1).all()  # image 4 at row 1, col 1; the rest blank
    with pytest.raises(ValueError, match="non-empty"):
        D.image_grid(torch.zeros(0, 3, 2, 2), 2)


# ---------------------------------------------------------------------------- parity with diffusers
# diffusers (Hugging Face) is the reference implementation of the schedules and samplers. Its
# schedulers compute in float32, ours in float64, hence the tolerances.

class _Wobble(torch.nn.Module):
    """A fixed, non-linear noise predictor in x and t (a stand-in for a trained U-Net)."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(3, 3, generator=g) * 0.5)

    def forward(self, x, t, cond=None, context=None, context_mask=None, drop=None):
        mixed = torch.einsum("oc,bchw->bohw", self.w, x)
        return torch.tanh(mixed + 1e-3 * t.float().view(-1, 1, 1, 1)) + 0.5 * x


def _diffusers_schedule(kind, T, **kw):
    from diffusers import DDIMScheduler, DDPMScheduler
    beta = dict(beta_schedule="linear", beta_start=1e-4 * 1000 / T, beta_end=0.02 * 1000 / T) if kind == "linear" \
        else dict(beta_schedule="squaredcos_cap_v2")
    common = dict(num_train_timesteps=T, clip_sample=True, clip_sample_range=1.0, prediction_type="epsilon", **beta)
    if kw.pop("ddim", False):
        return DDIMScheduler(set_alpha_to_one=True, **common, **kw)
    return DDPMScheduler(variance_type="fixed_small", **common, **kw)


@pytest.mark.parametrize("kind,T", [("linear", 1000), ("linear", 200), ("cosine", 1000), ("cosine", 50)])
def test_schedules_match_diffusers(kind, T):
    ours = (D.linear_schedule if kind == "linear" else D.cosine_schedule)(T)
    ref = _diffusers_schedule(kind, T)
    torch.testing.assert_close(ours.betas.float(), ref.betas, atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(ours.alpha_bar.float(), ref.alphas_cumprod, atol=1e-7, rtol=1e-4)


def test_q_sample_matches_diffusers_add_noise():
    s, ref = D.cosine_schedule(100), _diffusers_schedule("cosine", 100)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(4, 3, 5, 5, generator=g) * 2 - 1, torch.randn(4, 3, 5, 5, generator=g)
    t = torch.tensor([0, 17, 60, 99])
    torch.testing.assert_close(D.q_sample(x0, t, noise, s), ref.add_noise(x0, noise, t), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("steps", [None, 25])
def test_ddpm_sampler_matches_diffusers(steps):
    """The whole ancestral chain, step by step: DDPMScheduler with our time steps and the same noise
    draws (both take one randn of the image's shape per step except the last, from one generator)."""
    T = 100
    s, ref, net = D.linear_schedule(T), _diffusers_schedule("linear", T), _Wobble()
    shape, x_T = (2, 3, 4, 4), torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    ours = D.ddpm_sample(net, shape, s, steps=steps, noise=x_T, generator=torch.Generator().manual_seed(2))
    ref.set_timesteps(timesteps=D.sample_timesteps(T, steps or T))
    x, g = x_T.clone(), torch.Generator().manual_seed(2)
    with torch.no_grad():
        for t in ref.timesteps:
            x = ref.step(net(x, t.expand(2)), t, x, generator=g).prev_sample
    torch.testing.assert_close(ours, x, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_sampler_matches_diffusers(eta):
    """DDIM over all T steps (diffusers' DDIM fixes its own stride, so only the full chain shares our
    time steps), with the clipped x0 turned back into eps as ours does (use_clipped_model_output)."""
    T = 100
    s, ref, net = D.cosine_schedule(T), _diffusers_schedule("cosine", T, ddim=True), _Wobble(seed=3)
    shape, x_T = (2, 3, 4, 4), torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    ours = D.ddim_sample(net, shape, s, eta=eta, noise=x_T, generator=torch.Generator().manual_seed(2))
    ref.set_timesteps(T)
    assert ref.timesteps.tolist() == D.sample_timesteps(T, T)
    x, g = x_T.clone(), torch.Generator().manual_seed(2)
    with torch.no_grad():
        for t in ref.timesteps:
            z = torch.randn(shape, generator=g)   # ours draws one per step (unused when eta = 0)
            x = ref.step(net(x, t.expand(2)), t, x, eta=eta, use_clipped_model_output=True,
                         variance_noise=z).prev_sample
    torch.testing.assert_close(ours, x, atol=1e-4, rtol=1e-4)


def test_timestep_embedding_matches_diffusers_up_to_layout():
    """diffusers' get_timestep_embedding (no frequency shift) lays out [sin..., cos...]; ours
    interleaves them as chapter 05's table does. Same numbers, columns permuted."""
    from diffusers.models.embeddings import get_timestep_embedding
    t = torch.tensor([0.0, 1.0, 17.0, 999.0, 2.5])
    ours, ref = D.timestep_embedding(t, 32), get_timestep_embedding(t, 32, flip_sin_to_cos=False, downscale_freq_shift=0)
    torch.testing.assert_close(ours[:, 0::2], ref[:, :16], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[:, 1::2], ref[:, 16:], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------- more bad input
def test_schedule_and_forward_step_errors_name_the_fix():
    with pytest.raises(ValueError, match="betas must be a non-empty 1-D tensor"):
        D.Schedule(torch.tensor([], dtype=torch.float64))
    with pytest.raises(ValueError, match="one beta per time step"):
        D.Schedule([0.1, 0.2])  # a list, not a tensor
    with pytest.raises(ValueError, match="non-empty 1-D tensor"):
        D.Schedule(torch.full((2, 2), 0.1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"T must be an int >= 2 \(the number of noise steps\), got 1"):
        D.cosine_schedule(1)
    with pytest.raises(ValueError, match="T must be an int >= 2.*got 10.0"):
        D.cosine_schedule(10.0)
    s = D.cosine_schedule(10)
    with pytest.raises(ValueError, match=r"noise has shape \(1, 3, 4, 4\) but x has \(2, 3, 4, 4\): draw it with torch\.randn_like\(x\)"):
        D.q_step(torch.zeros(2, 3, 4, 4), 0, torch.zeros(1, 3, 4, 4), s)


def test_unet_construction_and_call_errors_name_the_fix():
    with pytest.raises(ValueError, match="mults must be a non-empty list of positive channel multipliers"):
        D.UNet(base=8, mults=())
    with pytest.raises(ValueError, match=r"positive channel multipliers, got \(1, 0\)"):
        D.UNet(base=8, mults=(1, 0))
    with pytest.raises(ValueError, match=r"give num_classes \(class ids\) or cond_dim \(vectors\), not both"):
        D.UNet(base=8, num_classes=3, cond_dim=4)
    with pytest.raises(ValueError, match="channels 16 must be divisible by heads=3"):
        _tiny(context_dim=4, heads=3)  # the middle block has base * 2 = 16 channels
    net = _tiny(context_dim=10)
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"t must hold one time step per image: shape \(2,\), got \(3,\)"):
        net(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"context_mask must be \(2, 5\), got \(2, 4\)"):
        net(x, 3, context=torch.randn(2, 5, 10), context_mask=torch.ones(2, 4, dtype=torch.bool))


def test_loss_sampler_and_grid_errors_name_the_fix():
    s = D.linear_schedule(20, beta_end=0.01)
    net = _tiny()
    with pytest.raises(ValueError, match=r"x0 must be a non-empty batch of images \(B, C, H, W\), got \(0, 3, 8, 8\)"):
        D.diffusion_loss(net, torch.zeros(0, 3, 8, 8), s)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\), got \(3, 8, 8\)"):
        D.diffusion_loss(net, torch.zeros(3, 8, 8), s)
    with pytest.raises(ValueError, match=r"noise has shape \(2, 3, 8, 8\) but shape is \(1, 3, 8, 8\)"):
        D.ddim_sample(net, (1, 3, 8, 8), s, steps=2, noise=torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="noise has shape"):
        D.ddpm_sample(net, (1, 3, 8, 8), s, steps=2, noise=torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="nrow=0 must be at least 1"):
        D.image_grid(torch.zeros(2, 3, 2, 2), nrow=0)
