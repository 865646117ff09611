"""Lyapunov spectra against systems with known exponents."""

import numpy as np
import pytest

from spikeedge.offline.lyapunov import lorenz_field, lyapunov_spectrum


def test_linear_system_exponents_are_the_real_parts_of_the_eigenvalues():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5)) * 0.3 - np.eye(5) * 0.5
    res = lyapunov_spectrum(lambda x: a @ x, lambda x: a, np.ones(5), dt=0.01, n_steps=40000, transient=5000)
    expected = np.sort(np.linalg.eigvals(a).real)[::-1]
    assert np.allclose(res.exponents, expected, atol=0.01)


def test_diagonal_system_exactly():
    a = np.diag([0.3, -0.2, -1.0])
    # after the transient the basis is aligned with the eigenvectors: every step then adds exactly
    # log of RK4's growth factor, so the estimate is exact up to RK4's own error (O(dt^4))
    res = lyapunov_spectrum(lambda x: a @ x, lambda x: a, np.ones(3), dt=0.01, n_steps=2000, transient=3000)
    assert np.allclose(res.exponents, [0.3, -0.2, -1.0], atol=1e-6)


@pytest.mark.slow
def test_lorenz63_spectrum():
    f, jac = lorenz_field()
    res = lyapunov_spectrum(f, jac, np.array([1.0, 1.0, 1.0]), dt=0.01, n_steps=60000, transient=2000)
    l1, l2, l3 = res.exponents
    assert l1 == pytest.approx(0.906, abs=0.05)
    assert l2 == pytest.approx(0.0, abs=0.03)
    assert l3 == pytest.approx(-14.572, abs=0.1)
    assert res.exponents.sum() == pytest.approx(-(10 + 1 + 8 / 3), abs=1e-3)  # trace of the Jacobian
