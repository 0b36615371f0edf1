"""UCE's closed form as pure functions of embedding matrices (no model, no tokenizer).

For one linear projection ``W₀`` (``out × d``) the edit minimises

    s_e Σ_e ‖W c_e − v*_e‖²  +  s_p Σ_p ‖W c_p − W₀ c_p‖²  +  λ ‖W − W₀‖²_F

over the erased inputs ``c_e`` (targets ``v*_e``) and the preserved inputs ``c_p``; ``s_e`` is ``erase_scale``,
``s_p`` ``preserve_scale`` and ``λ`` ``lamb`` (the ridge toward the original weights). Setting the gradient to
zero gives the paper's Eq. 7 with the ridge added:

    W = (s_e Σ v*_e c_eᵀ + s_p Σ W₀ c_p c_pᵀ + λ W₀) · A⁻¹,     A = s_e Σ c_e c_eᵀ + s_p Σ c_p c_pᵀ + λ I.

The ridge pulls ``W`` toward ``W₀`` (not toward zero): in every direction of the text space that no erased or
preserved vector spans, ``W`` keeps ``W₀``'s values. With ``v*_e = W₀ g_e`` (the guide's embedding) the bracket
is ``W₀ · (s_e Σ g_e c_eᵀ + s_p Σ c_p c_pᵀ + λ I)``, so ``W = W₀ · M`` with one ``d × d`` matrix ``M`` shared by
every projection that reads the same text vectors (``guide_map``); and ``W − W₀`` has rank at most the number of
erased vectors (``guide_update``), which is how the method computes it.

Everything is computed in float64; ``A`` must be well conditioned (``check_solvable``).
"""

from __future__ import annotations

import torch

from ...errors import ErasekitError

# The largest condition number of A accepted. The solution is computed in float64 (relative precision ~1e-16)
# and stored in float32 or lower, so errors of cond(A) · 1e-16 stay far below the weights' own rounding.
MAX_CONDITION = 1e12


class SingularSystemError(ErasekitError, ValueError):
    """UCE's linear system has no (numerically) unique solution: too few vectors span the text space."""


def _rows(x: torch.Tensor, name: str, dim: int | None = None) -> torch.Tensor:
    if x.ndim != 2:
        raise ValueError(f"{name} must be a matrix of row vectors (n, d), got shape {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has vectors of size {x.shape[1]}, expected {dim}")
    return x.detach().to(torch.float64)


def normal_matrix(
    erase_inputs: torch.Tensor,
    preserve_inputs: torch.Tensor,
    erase_scale: float = 1.0,
    preserve_scale: float = 1.0,
    lamb: float = 0.5,
) -> torch.Tensor:
    """``A = s_e Cₑᵀ Cₑ + s_p Cₚᵀ Cₚ + λ I`` (float64, ``d × d``) for row-vector matrices ``Cₑ (nₑ, d)``,
    ``Cₚ (nₚ, d)``."""
    c_e = _rows(erase_inputs, "erase_inputs")
    c_p = _rows(preserve_inputs, "preserve_inputs", c_e.shape[1])
    d = c_e.shape[1]
    return erase_scale * c_e.T @ c_e + preserve_scale * c_p.T @ c_p + lamb * torch.eye(d, dtype=torch.float64)


def check_solvable(a: torch.Tensor, lamb: float, n_vectors: int, what: str = "the text vectors") -> float:
    """Refuse a singular or ill-conditioned ``A`` with a message that says what to change; return a bound on (or the
    value of) its condition number.

    With ``λ > 0`` every eigenvalue is at least ``λ`` and at most ``trace(A)``, so ``trace(A) / λ`` bounds the
    condition number without an eigendecomposition; only when that bound is too large (or ``λ = 0``) are the
    eigenvalues computed.
    """
    d = a.shape[0]
    advice = (
        "set lamb > 0 (the ridge toward the original weights; the released code uses 0.5: --set lamb=0.5), "
        "a larger lamb, or preserve more concepts (--preserve, --set preserve_file=FILE)"
    )
    if lamb == 0 and n_vectors < d:
        raise SingularSystemError(
            f"UCE's system for {what} is singular: {n_vectors} erased and preserved vectors cannot span the "
            f"{d}-dimensional text space and lamb is 0; {advice}"
        )
    if lamb > 0:
        bound = float(torch.trace(a)) / lamb
        if bound <= MAX_CONDITION:
            return bound
    eigenvalues = torch.linalg.eigvalsh(a)
    low, high = float(eigenvalues[0]), float(eigenvalues[-1])
    condition = high / low if low > 0 else float("inf")
    if condition > MAX_CONDITION:
        raise SingularSystemError(
            f"UCE's system for {what} is ill-conditioned (condition number {condition:.3g} > {MAX_CONDITION:.0e}; "
            f"{n_vectors} vectors in a {d}-dimensional text space, lamb {lamb:g}); {advice}"
        )
    return condition


def _solve_right(b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``B · A⁻¹`` for a symmetric positive definite ``A`` (Cholesky)."""
    chol, info = torch.linalg.cholesky_ex(a)
    if int(info) != 0:
        raise SingularSystemError("UCE's system is not positive definite; set lamb > 0 or preserve more concepts")
    return torch.cholesky_solve(b.T, chol).T


def closed_form(
    w0: torch.Tensor,
    erase_inputs: torch.Tensor,
    erase_targets: torch.Tensor,
    preserve_inputs: torch.Tensor,
    erase_scale: float = 1.0,
    preserve_scale: float = 1.0,
    lamb: float = 0.5,
) -> torch.Tensor:
    """The minimiser ``W`` (float64) for any targets ``erase_targets (nₑ, out)``: the general form of Eq. 7."""
    w = w0.detach().to(torch.float64)
    c_e = _rows(erase_inputs, "erase_inputs", w.shape[1])
    v_e = _rows(erase_targets, "erase_targets", w.shape[0])
    c_p = _rows(preserve_inputs, "preserve_inputs", w.shape[1])
    if len(v_e) != len(c_e):
        raise ValueError(f"{len(c_e)} erased inputs but {len(v_e)} targets")
    a = normal_matrix(c_e, c_p, erase_scale, preserve_scale, lamb)
    check_solvable(a, lamb, len(c_e) + len(c_p))
    b = erase_scale * v_e.T @ c_e + preserve_scale * (w @ c_p.T) @ c_p + lamb * w
    return _solve_right(b, a)


def guide_update(
    erase_inputs: torch.Tensor,
    guide_inputs: torch.Tensor,
    preserve_inputs: torch.Tensor,
    erase_scale: float = 1.0,
    preserve_scale: float = 1.0,
    lamb: float = 0.5,
    what: str = "the text vectors",
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The closed form for targets ``v*_e = W₀ g_e`` as a low-rank update: ``(D, K, condition)`` with

        W = W₀ + (W₀ Dᵀ) K,    D = G − Cₑ  (nₑ × d),    K = s_e Cₑ A⁻¹  (nₑ × d),

    for every ``W₀`` reading these vectors (since ``B − W₀A = s_e W₀ (G − Cₑ)ᵀ Cₑ``: the change has rank ≤ nₑ);
    ``condition`` is the condition number of ``A`` (or its bound, ``check_solvable``). ``guide_inputs (nₑ, d)`` pairs
    one guide vector ``g_e`` with each erased vector ``c_e``.
    """
    c_e = _rows(erase_inputs, "erase_inputs")
    g_e = _rows(guide_inputs, "guide_inputs", c_e.shape[1])
    c_p = _rows(preserve_inputs, "preserve_inputs", c_e.shape[1])
    if len(g_e) != len(c_e):
        raise ValueError(f"{len(c_e)} erased vectors but {len(g_e)} guide vectors")
    a = normal_matrix(c_e, c_p, erase_scale, preserve_scale, lamb)
    condition = check_solvable(a, lamb, len(c_e) + len(c_p), what)
    return g_e - c_e, _solve_right(erase_scale * c_e, a), condition


def guide_map(
    erase_inputs: torch.Tensor,
    guide_inputs: torch.Tensor,
    preserve_inputs: torch.Tensor,
    erase_scale: float = 1.0,
    preserve_scale: float = 1.0,
    lamb: float = 0.5,
    what: str = "the text vectors",
) -> tuple[torch.Tensor, float]:
    """``M = I + Dᵀ K`` (float64, ``d × d``), so that ``W = W₀ · M`` (see ``guide_update``), and the condition."""
    d, k, condition = guide_update(erase_inputs, guide_inputs, preserve_inputs, erase_scale, preserve_scale, lamb, what)
    return torch.eye(d.shape[1], dtype=torch.float64) + d.T @ k, condition


def residual_bound(
    w0: torch.Tensor,
    erase_inputs: torch.Tensor,
    erase_targets: torch.Tensor,
    preserve_inputs: torch.Tensor,
    erase_scale: float = 1.0,
    preserve_scale: float = 1.0,
    lamb: float = 0.5,
) -> float:
    """An upper bound on the weighted squared residual ``s_e Σ‖W c_e − v*_e‖² + s_p Σ‖W c_p − W₀ c_p‖²`` of the
    minimiser, when the stacked inputs ``C = [Cₑ; Cₚ]`` are linearly independent (fewer vectors than dimensions).

    ``W* = W₀ + Rᵀ (C Cᵀ)⁻¹ C`` (``R``'s rows the target residuals ``v*_e − W₀ c_e``, zero for preserved rows) meets
    every target exactly, so the minimiser's objective, residuals included, is at most
    ``λ ‖W* − W₀‖²_F = λ · tr(Rᵀ (C Cᵀ)⁻¹ R)``.
    """
    w = w0.detach().to(torch.float64)
    c_e, c_p = _rows(erase_inputs, "erase_inputs"), _rows(preserve_inputs, "preserve_inputs")
    c = torch.cat([c_e, c_p])
    held = torch.zeros(len(c_p), w.shape[0], dtype=torch.float64)
    r = torch.cat([_rows(erase_targets, "erase_targets") - c_e @ w.T, held])
    gram = c @ c.T
    return float(lamb * torch.trace(r.T @ torch.linalg.solve(gram, r)))
