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


# -- maps (what LNP uses: the smoothed network is a discrete-time map) --------------------------

from spikeedge.offline.lyapunov import henon_map, map_lyapunov_spectrum  # noqa: E402


def test_linear_map_exponents_and_local_exponents_exactly():
    d = np.array([2.0, 0.5, 0.1])
    m = np.diag(d)
    res = map_lyapunov_spectrum(lambda x, t: m @ x, lambda x, t, q: m @ q, np.ones(3), n_steps=200, k=3, transient=100)
    assert np.allclose(res.exponents, np.log(d), atol=1e-9)
    # the basis is aligned with the axes: each coordinate's local exponent is its own rate
    assert np.allclose(res.local, np.log(d), atol=1e-6)


def test_triangular_map_exponents_are_log_of_the_diagonal():
    m = np.array([[1.5, 0.7, 0.2], [0.0, 0.8, -0.4], [0.0, 0.0, 0.3]])
    res = map_lyapunov_spectrum(lambda x, t: m @ x, lambda x, t, q: m @ q, np.ones(3), n_steps=400, k=3, transient=200)
    assert np.allclose(res.exponents, np.log([1.5, 0.8, 0.3]), atol=1e-3)


def test_henon_map_exponents():
    step, jvp = henon_map()
    res = map_lyapunov_spectrum(step, jvp, np.array([0.1, 0.1]), n_steps=100000, k=2, transient=1000)
    assert res.exponents[0] == pytest.approx(0.419, abs=0.01)
    assert res.exponents[1] == pytest.approx(-1.623, abs=0.01)
    assert res.exponents.sum() == pytest.approx(np.log(0.3), abs=1e-9)  # |det J| = b at every step


def test_local_exponents_add_up_to_the_spectrum_plus_the_floor():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(6, 6)) * 0.4
    res = map_lyapunov_spectrum(lambda x, t: m @ x, lambda x, t, q: m @ q, np.ones(6), n_steps=500, k=2, transient=100)
    # sum_i local_i = sum(l) + (n - k) l_k at every reorthonormalisation, hence on average
    assert res.local.sum() == pytest.approx(res.exponents.sum() + 4 * res.exponents[-1], rel=1e-6, abs=1e-9)
