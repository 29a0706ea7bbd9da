"""Networks, critic ensembles, expectile losses and IQL helpers against closed-form answers."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from saferl.constraints.critics import (
    CriticEnsemble,
    ValueNetwork,
    ensemble_mse_loss,
    expectile_loss,
    iql_q_target,
    iql_value_loss,
    polyak_update,
    reduce_ensemble,
    reversed_expectile_loss,
)
from saferl.networks.mlp import MLP, EnsembleLayerNorm, EnsembleLinear, EnsembleMLP


# ---------------------------------------------------------------------------- networks
def test_mlp_layers_and_output_activation() -> None:
    torch.manual_seed(0)
    net = MLP(3, 2, hidden=(8, 4), activation="tanh", layer_norm=True, dropout=0.1, output_activation="tanh")
    kinds = [type(m).__name__ for m in net.layers]
    hidden_block = ["Linear", "LayerNorm", "Tanh", "Dropout"]
    assert kinds == hidden_block * 2 + ["Linear", "Tanh"]
    out = net(100 * torch.randn(16, 3))
    assert out.shape == (16, 2) and out.abs().max() <= 1.0


def test_mlp_without_hidden_layers_is_linear() -> None:
    net = MLP(3, 2, hidden=())
    x = torch.randn(5, 3)
    linear = net.layers[0]
    torch.testing.assert_close(net(x), x @ linear.weight.T + linear.bias)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"activation": "swish2"}, "unknown activation"),
        ({"hidden": (8, 0)}, "hidden\\[1\\]"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_mlp_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MLP(3, 2, **kwargs)


def test_mlp_rejects_wrong_input_width() -> None:
    with pytest.raises(ValueError, match="last dimension 3"):
        MLP(3, 2)(torch.zeros(4, 5))


def _member_as_mlp(ensemble: EnsembleMLP, member: int, **kwargs) -> MLP:
    """An MLP holding member ``member``'s weights (nn.Linear stores W transposed)."""
    mlp = MLP(ensemble.in_dim, ensemble.out_dim, **kwargs)
    with torch.no_grad():
        for ens_layer, layer in zip(ensemble.layers, mlp.layers):
            if isinstance(ens_layer, (EnsembleLinear, EnsembleLayerNorm)):
                weight = ens_layer.weight[member]
                layer.weight.copy_(weight.T if isinstance(ens_layer, EnsembleLinear) else weight[0])
                layer.bias.copy_(ens_layer.bias[member, 0])
    return mlp


@pytest.mark.parametrize("layer_norm", [False, True])
def test_ensemble_members_compute_what_an_mlp_computes(layer_norm: bool) -> None:
    torch.manual_seed(0)
    kwargs = dict(hidden=(16, 8), activation="mish", layer_norm=layer_norm)
    ensemble = EnsembleMLP(3, 5, 2, **kwargs)
    with torch.no_grad():  # move LayerNorm's affine away from (1, 0) so that it is tested too
        for p in ensemble.parameters():
            p.add_(0.1 * torch.randn_like(p))
    shared = torch.randn(7, 5)
    per_member = torch.randn(3, 7, 5)
    out_shared, out_per_member = ensemble(shared), ensemble(per_member)
    assert out_shared.shape == out_per_member.shape == (3, 7, 2)
    for i in range(3):
        mlp = _member_as_mlp(ensemble, i, **kwargs)
        torch.testing.assert_close(out_shared[i], mlp(shared))
        torch.testing.assert_close(out_per_member[i], mlp(per_member[i]))


def test_ensemble_init_is_deterministic_by_seed_and_bounded() -> None:
    def build(seed: int) -> EnsembleMLP:
        torch.manual_seed(seed)
        return EnsembleMLP(4, 9, 1, hidden=(32,))

    a, b, c = build(1), build(1), build(2)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    first = a.layers[0].weight
    assert first.abs().max() <= 1 / math.sqrt(9)
    assert not torch.equal(first[0], first[1])  # members start apart


def test_ensemble_rejects_wrong_input_shape() -> None:
    with pytest.raises(ValueError, match=r"\(B, 5\) or \(3, B, 5\)"):
        EnsembleMLP(3, 5, 1)(torch.zeros(2, 7, 5))
    with pytest.raises(ValueError, match="n_members"):
        EnsembleMLP(0, 5, 1)


# ---------------------------------------------------------------------------- critics
def test_critic_ensemble_and_value_shapes() -> None:
    critics = CriticEnsemble(4, 2, n=5, hidden=(8,))
    assert critics(torch.randn(6, 4), torch.randn(6, 2)).shape == (5, 6)
    assert ValueNetwork(4, hidden=(8,))(torch.randn(6, 4)).shape == (6,)
    with pytest.raises(ValueError, match=r"actions must have shape \(6, 2\)"):
        critics(torch.randn(6, 4), torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"observations must have shape \(B, 4\)"):
        ValueNetwork(4)(torch.randn(6, 3))


def test_critic_state_dict_round_trips_with_weights_only() -> None:
    torch.manual_seed(0)
    critics = CriticEnsemble(4, 2, n=3, hidden=(8,), layer_norm=True)
    buffer = io.BytesIO()
    torch.save(critics.state_dict(), buffer)
    buffer.seek(0)
    restored = CriticEnsemble(4, 2, n=3, hidden=(8,), layer_norm=True)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    obs, act = torch.randn(5, 4), torch.randn(5, 2)
    torch.testing.assert_close(restored(obs, act), critics(obs, act))


def test_reduce_ensemble_closed_form() -> None:
    values = torch.tensor([[1.0, 5.0], [3.0, 2.0], [2.0, 9.0]])
    torch.testing.assert_close(reduce_ensemble(values, "min"), torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(reduce_ensemble(values, "max"), torch.tensor([3.0, 9.0]))
    torch.testing.assert_close(reduce_ensemble(values, "mean"), torch.tensor([2.0, 16.0 / 3.0]))
    torch.testing.assert_close(reduce_ensemble(values, "quantile", q=0.5), torch.tensor([2.0, 5.0]))
    torch.testing.assert_close(reduce_ensemble(values, "quantile", q=0.75), torch.tensor([2.5, 7.0]))


@pytest.mark.parametrize(
    "how, q, message",
    [
        ("median", None, "unknown reduction"),
        ("quantile", None, "needs q"),
        ("quantile", 1.5, "needs q"),
        ("min", 0.5, "only used"),
    ],
)
def test_reduce_ensemble_rejects_bad_arguments(how: str, q: float | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reduce_ensemble(torch.zeros(2, 3), how, q)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- expectiles
def test_expectile_loss_closed_form() -> None:
    diff = torch.tensor([2.0, -1.0])
    assert expectile_loss(diff, 0.8).item() == pytest.approx((0.8 * 4 + 0.2 * 1) / 2)
    # Reversed: weight tau where the prediction is above the target (diff < 0).
    assert reversed_expectile_loss(diff, 0.8).item() == pytest.approx((0.2 * 4 + 0.8 * 1) / 2)
    with pytest.raises(ValueError, match="tau must be in"):
        expectile_loss(diff, 1.0)


def _argmin_constant(loss, targets: torch.Tensor, tau: float) -> float:
    """The constant prediction minimising ``loss(targets - m, tau)`` on a fine grid."""
    grid = torch.linspace(targets.min().item(), targets.max().item(), 10_001)
    losses = torch.stack([loss(targets - m, tau) for m in grid])
    return grid[losses.argmin()].item()


def test_expectiles_move_towards_max_and_min() -> None:
    # For targets {0, 1} the tau-expectile m solves tau (1 - m) = (1 - tau) m, i.e. m = tau.
    targets = torch.tensor([0.0, 1.0])
    assert _argmin_constant(expectile_loss, targets, 0.9) == pytest.approx(0.9, abs=1e-3)
    assert _argmin_constant(reversed_expectile_loss, targets, 0.9) == pytest.approx(0.1, abs=1e-3)


def test_iql_value_loss_does_not_move_the_critic() -> None:
    q = torch.tensor([1.0, 3.0], requires_grad=True)
    v = torch.tensor([2.0, 2.0], requires_grad=True)
    loss = iql_value_loss(q, v, 0.7)
    assert loss.item() == pytest.approx((0.3 * 1 + 0.7 * 1) / 2)
    loss.backward()
    assert q.grad is None
    torch.testing.assert_close(v.grad, torch.tensor([0.3, -0.7]))  # d/dv mean(w (q - v)^2) = -w (q - v)


def test_iql_q_target_stops_only_at_terminals() -> None:
    r, v_next = torch.tensor([1.0, 1.0]), torch.tensor([10.0, 10.0])
    terminals = torch.tensor([0.0, 1.0])
    torch.testing.assert_close(iql_q_target(r, 0.9, v_next, terminals), torch.tensor([10.0, 1.0]))
    with pytest.raises(ValueError, match="same shape"):
        iql_q_target(r, 0.9, v_next, torch.zeros(3))
    with pytest.raises(ValueError, match="gamma"):
        iql_q_target(r, 1.5, v_next, terminals)


def test_ensemble_mse_loss_sums_members() -> None:
    q = torch.tensor([[1.0, 2.0], [0.0, 4.0]])
    target = torch.tensor([1.0, 1.0])
    assert ensemble_mse_loss(q, target).item() == pytest.approx(0.5 + 5.0)
    with pytest.raises(ValueError, match="n_members, B"):
        ensemble_mse_loss(q, torch.zeros(3))


def test_polyak_update_closed_form() -> None:
    source = torch.nn.Linear(2, 1)
    target = copy.deepcopy(source)
    with torch.no_grad():
        source.weight.fill_(4.0)
        target.weight.fill_(0.0)
    polyak_update(target, source, 0.25)
    torch.testing.assert_close(target.weight, torch.full((1, 2), 1.0))
    polyak_update(target, source, 1.0)
    torch.testing.assert_close(target.weight, source.weight)
    with pytest.raises(ValueError, match="tau must be in"):
        polyak_update(target, source, 1.5)
    with pytest.raises(ValueError, match="same parameter shapes"):
        polyak_update(torch.nn.Linear(3, 1), source, 0.5)
