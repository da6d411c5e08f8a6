"""The compiled Snake kernel against snac's own Snake activation, and its torch fallbacks."""

from __future__ import annotations

import pytest
import torch

from tts_plugin.engine import snake_kernel
from tts_plugin.engine.snake_kernel import Snake, snake_torch


def reference(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """snac's Snake1d in float64 (channels last here): x + 1/(alpha+1e-9) * sin(alpha x)^2."""
    x, alpha = x.double(), alpha.double()
    return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


def inputs(batch: int, rows: int, channels: int, scale: float = 5.0):
    gen = torch.Generator().manual_seed(batch * 1000 + rows + channels)
    x = torch.randn(batch, rows, channels, generator=gen) * scale
    alpha = torch.rand(channels, generator=gen) * 3 + 0.05
    return x, alpha, (alpha + 1e-9).reciprocal()


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want).norm() / want.norm())


@pytest.fixture(scope="module")
def native():
    kernel = Snake(native=True)
    if not kernel.native:
        pytest.fail("the Snake kernel did not build: a C compiler is part of `make setup`")
    return kernel


@pytest.mark.parametrize("shape", [(1, 4, 1024), (1, 2048, 64), (3, 37, 129), (2, 1, 7)])
def test_native_snake_is_as_accurate_as_torch(native, shape):
    x, alpha, inv_alpha = inputs(*shape)
    want = reference(x, alpha)
    native_error = relative_error(native(x, alpha, inv_alpha), want)
    torch_error = relative_error(snake_torch(x, alpha, inv_alpha), want)
    assert native_error < 1e-7
    assert native_error < 2 * torch_error + 1e-8


def test_large_arguments_reduce_accurately(native):
    x, alpha, inv_alpha = inputs(1, 64, 32, scale=300.0)  # alpha * x up to ~1000 rad
    assert relative_error(native(x, alpha, inv_alpha), reference(x, alpha)) < 1e-7


def test_writes_into_a_strided_batch_of_rows(native):
    """The decoder writes Snake(x) after each row's convolution history in a larger buffer."""
    x, alpha, inv_alpha = inputs(3, 10, 16)
    buffer = torch.full((3, 14, 16), -1.0)
    native(x, alpha, inv_alpha, out=buffer[:, 4:])
    assert torch.equal(buffer[:, :4], torch.full((3, 4, 16), -1.0))  # history rows untouched
    assert relative_error(buffer[:, 4:], reference(x, alpha)) < 1e-7


def test_unsupported_layouts_and_dtypes_fall_back_to_torch(native):
    x, alpha, inv_alpha = inputs(1, 8, 16)
    transposed = x.transpose(1, 2).contiguous().transpose(1, 2)  # channels not contiguous
    assert relative_error(native(transposed, alpha, inv_alpha), reference(x, alpha)) < 1e-7
    alpha64 = alpha.double()
    doubled = native(x.double(), alpha64, (alpha64 + 1e-9).reciprocal())
    assert doubled.dtype == torch.float64
    assert relative_error(doubled, reference(x, alpha)) < 1e-12


def test_without_a_compiler_snake_runs_in_torch(monkeypatch, tmp_path):
    monkeypatch.setattr(snake_kernel, "_library", None)
    monkeypatch.setattr(snake_kernel, "_loaded", False)
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kernel = Snake(native=True)
    assert not kernel.native
    x, alpha, inv_alpha = inputs(1, 8, 16)
    assert relative_error(kernel(x, alpha, inv_alpha), reference(x, alpha)) < 1e-7


def test_kernel_builds_into_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(snake_kernel, "_library", None)
    monkeypatch.setattr(snake_kernel, "_loaded", False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert Snake(native=True).native
    assert len(list((tmp_path / "orpheus-rtc").glob("snake-*.so"))) == 1
