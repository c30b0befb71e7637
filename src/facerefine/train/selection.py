"""Choosing the CycleGAN heads from the grid and rendering Tables 2 and 3 (paper §5.2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# Paper values: (L, SSIM) by lambda_cyc and lr. Table 3 ran ESA at lr 1e-4 only.
PAPER = {
    "cyclegan": {10: {1e-4: (0.96, 0.96), 2e-4: (0.98, 0.95), 3e-4: (1.59, 0.68)},
                 5: {1e-4: (0.85, 0.95), 2e-4: (1.02, 0.95), 3e-4: (1.44, 0.75)},
                 2: {1e-4: (0.72, 0.95), 2e-4: (0.90, 0.96), 3e-4: (1.36, 0.80)}},
    "esa": {10: {1e-4: (1.22, 0.92)}, 5: {1e-4: (0.77, 0.96)}, 2: {1e-4: (0.61, 0.95)}},
}
TITLES = {"cyclegan": "Table 2: CycleGAN", "esa": "Table 3: ESA-CycleGAN"}


def failed(cell: Mapping, ssim_fail: float) -> bool:
    """The paper's sanity check: a cycle SSIM well below 0.9 means a poor run."""
    ssim = cell.get("ssim_cycle")
    return ssim is None or ssim < ssim_fail


def pick_best(cells: Sequence[Mapping], ssim_fail: float) -> dict[str, dict]:
    """Per variant, the cell with the lowest best generator loss among those that
    pass the SSIM check (or among all, flagged, if none passes)."""
    chosen: dict[str, dict] = {}
    for variant in sorted({c["variant"] for c in cells}):
        mine = [c for c in cells if c["variant"] == variant]
        passing = [c for c in mine if not failed(c, ssim_fail)]
        best = min(passing or mine, key=lambda c: c["best_loss_G"])
        chosen[variant] = {**best, "all_failed": not passing}
    return chosen


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def render_table(variant: str, cells: Sequence[Mapping], ssim_fail: float) -> str:
    """Rows λ_cyc (descending, as in the paper), columns lr with L and SSIM; paper values in brackets."""
    ours = {(c["lambda_cyc"], c["lr"]): c for c in cells if c["variant"] == variant}
    paper = PAPER.get(variant, {})
    lams = sorted({k[0] for k in ours} | set(paper), reverse=True)
    lrs = sorted({k[1] for k in ours} | {lr for row in paper.values() for lr in row})
    head = "| λ_cyc | " + " | ".join(f"L @ {lr:g} | SSIM @ {lr:g}" for lr in lrs) + " |"
    lines = [f"### {TITLES.get(variant, variant)}", "", "ours (paper in brackets; ✗ = cycle SSIM < "
             f"{ssim_fail:g}, a failed run)", "", head, "|" + "---|" * (1 + 2 * len(lrs))]
    for lam in lams:
        row = [f"{lam:g}"]
        for lr in lrs:
            c, p = ours.get((float(lam), float(lr))), paper.get(lam, {}).get(lr)
            loss = _fmt(c["best_loss_G"]) if c else "not run"
            ssim = _fmt(c.get("ssim_cycle")) + (" ✗" if failed(c, ssim_fail) else "") if c else "not run"
            if p:
                loss, ssim = f"{loss} ({p[0]:.2f})", f"{ssim} ({p[1]:.2f})"
            row += [loss, ssim]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def render_report(cells: Sequence[Mapping], chosen: Mapping[str, Mapping], ssim_fail: float,
                  standins: Sequence[str] = ()) -> str:
    """``standins`` (``weights.standin_networks``): non-empty puts the stand-in banner on top."""
    from facerefine.weights import standin_banner

    parts = ["# CycleGAN grid (paper §5.2, Tables 2–3)", ""]
    if standins:
        parts += [standin_banner(standins), ""]
    parts += ["L is the best (lowest) epoch-mean generator loss of the run (adversarial + λ_cyc·cycle + "
              "λ_cyc·λ_id·identity); SSIM compares held-out schnell images with their full cycle F(G(x)). "
              "L grows with λ_cyc by construction, so compare it within a row.", ""]
    for variant in sorted({c["variant"] for c in cells}):
        parts += [render_table(variant, cells, ssim_fail), ""]
    parts += ["## Chosen heads", "", "| variant | cell | L | SSIM | note |", "|---|---|---|---|---|"]
    for variant, c in chosen.items():
        note = "every cell failed the SSIM check" if c["all_failed"] else ""
        parts.append(f"| {variant} | `{c['cell']}` | {_fmt(c['best_loss_G'])} | {_fmt(c.get('ssim_cycle'))} | {note} |")
    return "\n".join(parts) + "\n"
