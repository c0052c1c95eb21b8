"""Networks: encoder scaling, actors (log-probabilities, bounds, act()), the stacked critic ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import AffineTransform, TanhTransform

from evo_rl.errors import EvoError
from evo_rl.nets import (
    EnsembleQNetwork,
    GaussianActor,
    ObservationEncoder,
    QNetwork,
    SquashedGaussianActor,
    ValueNetwork,
)

ACT = spaces.Box(-1.0, 1.0, (3,), np.float32)
LIDAR = spaces.Tuple(
    (
        spaces.Box(0.0, 1000.0, (1,), np.float32),
        spaces.Box(0.0, 100.0, (4, 19), np.float32),
        spaces.Box(-1.0, 1.0, (3,), np.float32),
        spaces.Box(-1.0, 1.0, (3,), np.float32),
    )
)
FULL = spaces.Tuple(
    (
        spaces.Box(0.0, np.inf, (1,), np.float32),
        spaces.Box(0.0, 6.0, (1,), np.float32),
        spaces.Box(0.0, 11000.0, (1,), np.float32),
        spaces.Box(0, 255, (4, 64, 64), np.uint8),
        spaces.Box(-1.0, 1.0, (3,), np.float32),
    )
)


def sample_batch(space: spaces.Space, n: int, seed: int = 0):
    space.seed(seed)
    samples = [space.sample() for _ in range(n)]
    if isinstance(space, spaces.Box):
        return np.stack(samples)
    return tuple(np.stack([s[i] for s in samples]) for i in range(len(space.spaces)))


def to_torch(obs):
    return torch.as_tensor(obs) if isinstance(obs, np.ndarray) else tuple(torch.as_tensor(o) for o in obs)


def test_encoder_scales_bounded_parts_and_symlogs_unbounded_ones():
    space = spaces.Tuple(
        (
            spaces.Box(np.array([0.0, -np.inf], np.float32), np.array([500.0, np.inf], np.float32)),
            spaces.Box(-2.0, 4.0, (2, 3), np.float32),
            spaces.Box(0.0, 0.0, (1,), np.float32),
        )
    )
    enc = ObservationEncoder(space)
    x0 = np.array([[250.0, -9.0], [100.0, 3.0]], np.float32)
    x1 = np.arange(12, dtype=np.float32).reshape(2, 2, 3) - 3
    x2 = np.array([[7.0], [-1.0]], np.float32)
    out = enc(to_torch((x0, x1, x2))).numpy()
    expected = np.concatenate(
        [
            np.stack([x0[:, 0] / 500.0, np.sign(x0[:, 1]) * np.log1p(np.abs(x0[:, 1]))], axis=1),
            x1.reshape(2, -1) / 4.0,
            x2,  # both bounds zero: unscaled
        ],
        axis=1,
    )
    assert enc.out_dim == 9 and len(enc.cnns) == 0
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert sum(p.numel() for p in enc.parameters()) == 0


def test_encoder_images_go_through_the_cnn():
    enc = ObservationEncoder(FULL)
    obs = to_torch(sample_batch(FULL, 3))
    with torch.no_grad():
        out = enc(obs)
    assert out.shape == (3, 6 + 256)
    # the vector part comes first, scaled: gear / 6, rpm / 11000, actions / 1, speed symlog
    np.testing.assert_allclose(out[:, 1].numpy(), obs[1][:, 0].numpy() / 6.0, rtol=1e-6)
    np.testing.assert_allclose(out[:, 0].numpy(), np.log1p(obs[0][:, 0].numpy()), rtol=1e-5)
    # pixels are divided by 255 before the convolutions
    cnn = enc.cnns[0]
    with torch.no_grad():
        expected = cnn.head(cnn.convs(obs[3].float() / 255))
    np.testing.assert_allclose(out[:, 6:].numpy(), expected.numpy(), rtol=1e-6)


def test_encoder_rejects_small_images_and_unsupported_spaces():
    small = spaces.Tuple((spaces.Box(0, 255, (4, 16, 16), np.uint8),))
    with pytest.raises(EvoError, match="camera.width"):
        ObservationEncoder(small)
    with pytest.raises(EvoError, match="not supported"):
        ObservationEncoder(spaces.Discrete(3))


def test_squashed_actor_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    act_space = spaces.Box(np.array([-1.0, 0.0, -2.0], np.float32), np.array([1.0, 1.0, 2.0], np.float32))
    actor = SquashedGaussianActor(LIDAR, act_space, hidden=[16, 16])
    obs = to_torch(sample_batch(LIDAR, 5))
    torch.manual_seed(1)
    action, log_prob = actor(obs)
    # same noise, reference distribution: Normal -> tanh -> affine to the bounds
    mean, log_std = actor.net(actor.encoder(obs)).chunk(2, dim=-1)
    scale = torch.tensor([1.0, 0.5, 2.0])
    bias = torch.tensor([0.0, 0.5, 0.0])
    dist = TransformedDistribution(
        Normal(mean, log_std.clamp(-20, 2).exp()), [TanhTransform(), AffineTransform(bias, scale)]
    )
    expected = dist.log_prob(action).sum(-1)
    np.testing.assert_allclose(log_prob.detach().numpy(), expected.detach().numpy(), rtol=1e-4, atol=1e-4)
    assert torch.all(action >= torch.as_tensor(act_space.low)) and torch.all(action <= torch.as_tensor(act_space.high))


def test_gaussian_actor_evaluate_matches_torch_distributions():
    torch.manual_seed(0)
    actor = GaussianActor(LIDAR, ACT, hidden=[16], log_std_init=-0.5)
    obs = to_torch(sample_batch(LIDAR, 6))
    action, log_prob = actor(obs)
    mean = actor.net(actor.encoder(obs))
    dist = Normal(mean, actor.log_std.exp())
    new_log_prob, entropy = actor.evaluate(obs, action)
    np.testing.assert_allclose(log_prob.detach(), dist.log_prob(action).sum(-1).detach(), rtol=1e-5)
    np.testing.assert_allclose(new_log_prob.detach(), dist.log_prob(action).sum(-1).detach(), rtol=1e-5)
    np.testing.assert_allclose(entropy.detach(), dist.entropy().sum(-1).detach(), rtol=1e-5)


@pytest.mark.parametrize("actor_class", [SquashedGaussianActor, GaussianActor])
@pytest.mark.parametrize("space", [LIDAR, FULL], ids=["lidar", "full"])
def test_act_is_deterministic_in_test_mode_bounded_and_batched(actor_class, space):
    torch.manual_seed(0)
    actor = actor_class(space, ACT, hidden=[16])
    with torch.no_grad():  # push the outputs outside the bounds to check clipping/squashing
        actor.net[-1].bias.fill_(5.0)
    batch = sample_batch(space, 4)
    single = tuple(part[0] for part in batch)
    a1, a2 = actor.act(batch, test=True), actor.act(batch, test=True)
    assert a1.shape == (4, 3) and a1.dtype == np.float32
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(actor.act(single, test=True), a1[0], rtol=1e-5, atol=1e-6)
    assert actor.act(single).shape == (3,)
    stochastic = actor.act(batch, test=False)
    for a in (a1, stochastic):
        assert np.all(a >= -1.0) and np.all(a <= 1.0)


def test_act_accepts_flat_observations_and_test_mode_is_the_squashed_mean():
    torch.manual_seed(0)
    space = spaces.Box(-1.0, 1.0, (10,), np.float32)
    actor = SquashedGaussianActor(space, ACT, hidden=[8])
    obs = np.random.default_rng(0).uniform(-1, 1, (5, 10)).astype(np.float32)
    with torch.no_grad():
        mean = actor.net(torch.as_tensor(obs))[:, :3]  # flat Box in [-1, 1]: the encoder passes it through
    np.testing.assert_allclose(actor.act(obs, test=True), torch.tanh(mean).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(actor.act(obs[2], test=True), torch.tanh(mean[2]).numpy(), rtol=1e-6, atol=1e-7)
    torch.manual_seed(3)
    a1 = actor.act(obs)
    torch.manual_seed(3)
    a2 = actor.act(obs)
    np.testing.assert_array_equal(a1, a2)  # sampling follows torch's seed
    assert not np.allclose(a1, actor.act(obs, test=True))


def test_ensemble_equals_separate_critics_forward_and_gradients():
    torch.manual_seed(0)
    n = 4
    critics = [QNetwork(LIDAR, ACT, hidden=[16, 8]) for _ in range(n)]
    ensemble = EnsembleQNetwork(LIDAR, ACT, hidden=[16, 8], n=n)
    ensemble.load_members(critics)
    obs = to_torch(sample_batch(LIDAR, 7))
    action = torch.rand(7, 3) * 2 - 1
    q = ensemble(obs, action)  # [n, B]
    q_sep = torch.stack([c(obs, action) for c in critics])
    torch.testing.assert_close(q, q_sep, rtol=1e-5, atol=1e-6)

    # gradients of the same loss, member by member
    target = torch.randn(7)
    ((q - target) ** 2).mean(1).sum().backward()
    ((q_sep - target) ** 2).mean(1).sum().backward()
    for i, critic in enumerate(critics):
        linears = [m for m in critic.net if isinstance(m, torch.nn.Linear)]
        for layer, w, b in zip(linears, ensemble.weights, ensemble.biases, strict=True):
            torch.testing.assert_close(w.grad[i], layer.weight.grad.T, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(b.grad[i, 0], layer.bias.grad, rtol=1e-5, atol=1e-6)

    # a subset of members, in the given order
    members = torch.tensor([3, 1])
    torch.testing.assert_close(ensemble(obs, action, members=members), q_sep[members].detach(), rtol=1e-5, atol=1e-6)


def test_ensemble_layer_norm_normalises_each_members_hidden_layers():
    torch.manual_seed(0)
    ensemble = EnsembleQNetwork(LIDAR, ACT, hidden=[16, 8], n=3, layer_norm=True)
    with torch.no_grad():  # gains and offsets away from 1 and 0, different per member
        for g, o in zip(ensemble.norm_gains, ensemble.norm_offsets, strict=True):
            g.uniform_(0.5, 1.5)
            o.uniform_(-0.5, 0.5)
    obs = to_torch(sample_batch(LIDAR, 6))
    action = torch.rand(6, 3) * 2 - 1
    q = ensemble(obs, action)  # [n, B]
    x = torch.cat([ensemble.encoder(obs), action], dim=1)
    for i in range(3):  # one member by hand: Linear -> LayerNorm (gain, offset) -> ReLU, then the output layer
        h = x
        for layer in range(2):
            h = h @ ensemble.weights[layer][i] + ensemble.biases[layer][i, 0]
            mean, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
            h = (h - mean) / torch.sqrt(var + 1e-5) * ensemble.norm_gains[layer][i, 0] + ensemble.norm_offsets[layer][
                i, 0
            ]
            h = torch.relu(h)
        expected = (h @ ensemble.weights[2][i] + ensemble.biases[2][i, 0]).squeeze(-1)
        torch.testing.assert_close(q[i], expected, rtol=1e-5, atol=1e-5)
    members = torch.tensor([2, 0])
    torch.testing.assert_close(ensemble(obs, action, members=members), q[members], rtol=1e-5, atol=1e-6)
    q.sum().backward()
    assert all(g.grad is not None and g.grad.abs().sum() > 0 for g in ensemble.norm_gains)
    assert len(list(EnsembleQNetwork(LIDAR, ACT, hidden=[16, 8], n=3).parameters())) == 6  # off: no extra parameters


def test_ensemble_detach_params_passes_gradient_to_actions_only():
    torch.manual_seed(0)
    ensemble = EnsembleQNetwork(LIDAR, ACT, hidden=[16], n=3)
    obs = to_torch(sample_batch(LIDAR, 5))
    action = (torch.rand(5, 3) * 2 - 1).requires_grad_(True)
    ensemble(obs, action, detach_params=True).mean().backward()
    grad_detached = action.grad.clone()
    assert all(p.grad is None for p in ensemble.parameters())
    action.grad = None
    ensemble(obs, action).mean().backward()
    torch.testing.assert_close(action.grad, grad_detached)


def test_value_network_is_an_mlp_of_the_encoded_observation():
    torch.manual_seed(0)
    value = ValueNetwork(LIDAR, hidden=[8], activation="tanh")
    obs = to_torch(sample_batch(LIDAR, 4))
    linears = [m for m in value.net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        h = torch.tanh(value.encoder(obs) @ linears[0].weight.T + linears[0].bias)
        expected = (h @ linears[1].weight.T + linears[1].bias).squeeze(-1)
        torch.testing.assert_close(value(obs), expected)
    assert value(obs).shape == (4,)
    assert torch.count_nonzero(linears[-1].bias) == 0  # orthogonal init, zero biases


def test_value_network_reads_the_pixels():
    torch.manual_seed(0)
    value = ValueNetwork(FULL, hidden=[8])
    obs = to_torch(sample_batch(FULL, 2))
    dark = tuple(o.clone() for o in obs)
    dark[3].zero_()
    with torch.no_grad():
        v, v_dark = value(obs), value(dark)
    assert v.shape == (2,) and torch.all((v - v_dark).abs() > 1e-6)
    assert any(p.requires_grad for p in value.encoder.parameters())  # the CNN is learned with the value
