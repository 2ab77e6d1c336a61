"""The self-contained HTML report of a results folder (figures embedded, no external files)."""

from __future__ import annotations

import base64
import html
import json
import tomllib
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["write_report"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em} th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left} .fail{color:#b00;font-weight:600} .pass{color:#070;font-weight:600}
img{max-width:100%;border:1px solid #eee;margin:.5em 0} .note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.5em 0}
.muted{color:#666;font-size:.85em} pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


class Html(str):
    """Markup that twinbayes wrote itself: the only text :func:`_table` does not escape."""


def _table(header: list[str], rows: list[list], left: int = 1) -> str:
    th = "".join(
        f'<th class="{"l" if i < left else ""}">{html.escape(str(h))}</th>'
        for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"l" if i < left else ""}">{c if isinstance(c, Html) else html.escape(str(c))}</td>'
            for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _fmt(x, digits=3) -> str:
    return f"{x:.{digits}g}" if isinstance(x, (float, np.floating)) else str(x)


def _ladder_text(attempts: list[dict], converged: bool) -> str:
    """What the gate's escalation ladder did, for the convergence table."""
    if len(attempts) < 2:
        return "none needed" if converged else "none (ladder off)"
    steps = "; ".join(
        f"{a['step'] + 1}: target_accept {a['target_accept']:.3f}, {a['tune']} warm-up, {a['draws']} draws "
        f"-> {'passed' if a['passed'] else 'failed'}"
        for a in attempts
    )
    return steps + ("" if converged else "; ladder exhausted, twin excluded")


def _share_cell(d, sc, q) -> str:
    """Between-twin share ± MCSE, its interval over weight draws and at equal weights (n/a where undefined)."""
    v, e, lo, hi, eq = (
        float(d[f"qoi_between_share{k}"].sel(scenario=sc, qoi=q))
        if f"qoi_between_share{k}" in d
        else float("nan")
        for k in ("", "_mcse", "_q05", "_q95", "_equal")
    )
    cell = "n/a" if v != v else f"{v:.3f} ± {e:.3f}"
    if lo == lo:
        cell += f" [{lo:.3f}-{hi:.3f}"
        cell += f"; {eq:.3f}]" if eq == eq else "]"
    elif eq == eq:
        cell += f" [equal weights {eq:.3f}]"
    return cell


def _head_section(folder: Path, study: dict, provenance: dict) -> list[str]:
    """Title, description, patient (pseudonym) and seed."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>twinbayes report</title><style>{CSS}</style></head><body>"
    ]
    st = study.get("study", {})
    parts.append(f"<h1>twinbayes report: {html.escape(st.get('name', folder.name))}</h1>")
    if st.get("description"):
        parts.append(f"<p>{html.escape(st['description'])}</p>")
    patient = provenance.get("patient") or {}
    parts.append(
        f"<p class='muted'>patient {html.escape(str(patient.get('id')))} from {html.escape(Path(str(patient.get('source'))).name)}; seed {html.escape(str(st.get('seed', '')))}</p>"
    )
    return parts


def _outcome_section(summary: dict, outcome: dict) -> list[str]:
    """How the run ended, when not every twin converged or a step was skipped."""
    parts: list[str] = []
    if outcome.get("code"):
        failed = [n for n, t in summary.items() if not t["converged"]]
        why = outcome.get("skipped") or [
            f"failed the convergence gate after the escalation ladder: {', '.join(failed)}"
        ]
        parts.append(
            "<p class='fail'><b>Outcome "
            + html.escape(f"{outcome.get('name')} (exit code {outcome.get('code')})")
            + ":</b> "
            + html.escape("; ".join(why))
            + "</p>"
        )
    return parts


def _convergence_section(summary: dict) -> list[str]:
    """Gate verdict, diagnostics and escalation of every twin."""
    parts: list[str] = []
    parts.append("<h2>Twins and convergence</h2>")
    rows = []
    for name, s in summary.items():
        status = Html(
            "<span class='pass'>passed</span>"
            if s["converged"]
            else "<span class='fail'>FAILED</span>"
        )
        diag = s.get("diagnostics") or {
            "-": {"rhat": float("nan"), "ess_bulk": float("nan"), "ess_tail": float("nan")}
        }
        worst_r = max(d["rhat"] for d in diag.values())
        min_ess = min(min(d["ess_bulk"], d["ess_tail"]) for d in diag.values())
        rows.append(
            [
                name,
                status,
                f"{worst_r:.4f}",
                f"{min_ess:.0f}",
                s.get("divergent", "-"),
                _ladder_text(s.get("gate_attempts", []), s["converged"]),
                "; ".join(s["reasons"]) or "-",
            ]
        )
    parts.append(
        _table(
            [
                "twin",
                "gate",
                "max R-hat",
                "min ESS (bulk/tail)",
                "divergent",
                "escalation",
                "reasons",
            ],
            rows,
        )
    )
    return parts


def _posterior_section(folder: Path, summary: dict, figs: Path) -> list[str]:
    """Posterior summary and checks of every fitted twin."""
    parts: list[str] = []
    for name in summary:
        if summary[name].get("failed"):
            continue  # no posterior: the fit itself failed (its cause is in the table above)
        tree = xr.open_datatree(folder / "twins" / f"{name}.nc", engine="h5netcdf")
        post = tree["posterior"].to_dataset()
        rows = []
        for var in post.data_vars:
            q = np.quantile(post[var].values, [0.05, 0.5, 0.95])
            rows.append([var, _fmt(q[1]), _fmt(q[0]), _fmt(q[2])])
        parts.append(
            f"<h3>{html.escape(name)}: posterior</h3>"
            + _table(["quantity", "median", "5 %", "95 %"], rows)
        )
        fig = figs / f"{name}_checks.png"
        if fig.exists():
            parts.append(_img(fig, f"posterior predictive check and LOO-PIT of {name}"))
    return parts


def _comparison_section(folder: Path, figs: Path) -> list[str]:
    """The comparison table, weights, notes and averaged predictions."""
    parts: list[str] = []
    if (folder / "comparison.nc").exists():
        comp = xr.open_datatree(folder / "comparison.nc", engine="h5netcdf")
        t = comp["table"].to_dataset()
        parts.append("<h2>Out-of-sample comparison and weights</h2>")
        rows = [
            [
                str(t.twin.values[i]),
                f"{float(t.elpd[i]):.2f}",
                f"{float(t.se[i]):.2f}",
                f"{float(t.elpd_diff[i]):.2f}",
                f"{float(t.se_diff[i]):.2f}",
                f"{float(t.p_loo[i]):.2f}",
                f"{float(t.stacking[i]):.2f} ({float(t.stacking_q05[i]):.2f}-{float(t.stacking_q95[i]):.2f})",
                f"{float(t.pseudo_bma[i]):.2f}",
                str(t.cv_method.values[i]),
                str(t.note.values[i]) or "-",
            ]
            for i in range(t.sizes["twin"])
        ]
        parts.append(
            _table(
                [
                    "twin",
                    "elpd",
                    "SE",
                    "elpd diff",
                    "SE diff",
                    "p_loo",
                    "stacking (90 % BB)",
                    "pseudo-BMA+",
                    "cv",
                    "note",
                ],
                rows,
            )
        )
        for n in json.loads(comp.attrs.get("notes", "[]")):
            parts.append(f"<div class='note'>{html.escape(n)}</div>")
        if (figs / "average.png").exists():
            parts.append(_img(figs / "average.png", "twins and their weighted average"))
    return parts


def _disagreement_section(folder: Path, figs: Path) -> list[str]:
    """Scenarios: decision tables, shares with their uncertainty, QoIs."""
    parts: list[str] = []
    if (folder / "disagreement.nc").exists():
        d = xr.open_dataset(folder / "disagreement.nc", engine="h5netcdf")
        parts.append("<h2>Scenarios: how much the twins disagree</h2>")
        if (
            d.attrs.get("excluded")
            or d.attrs.get("zero_weight")
            or d.attrs.get("n_ensemble", 2) < 2
        ):
            note = "excluded from the ensemble (failed the convergence gate): " + str(
                d.attrs.get("excluded") or "-"
            )
            note += "; weight 0 from the comparison: " + str(d.attrs.get("zero_weight") or "-")
            if d.attrs.get("n_ensemble", 2) < 2:
                note += "; with fewer than two twins in the ensemble the between-twin share is undefined (n/a), not 0"
            parts.append(f"<p class='fail'>{html.escape(note)}</p>")
        for name, alt in [
            ("scenario_fans", "forecast fans per scenario"),
            ("disagreement_over_time", "between-twin share over time"),
            ("decision_table", "decision table"),
        ]:
            if (figs / f"{name}.png").exists():
                parts.append(_img(figs / f"{name}.png", alt))
        for tg in d.target.values:
            rows = [
                [str(sc)]
                + [
                    f"{float(d.p_meets.sel(source=s, scenario=sc, target=tg)):.3f} ± {float(d.p_meets_mcse.sel(source=s, scenario=sc, target=tg)):.3f}"
                    for s in d.source.values
                ]
                for sc in d.scenario.values
            ]
            rows.append(
                ["best scenario"]
                + [str(d.best_scenario.sel(source=s, target=tg).values) for s in d.source.values]
            )
            parts.append(
                f"<h3>P({html.escape(str(tg))}) ± Monte Carlo SE</h3>"
                + _table(["scenario", *map(str, d.source.values)], rows)
            )
            parts.append(
                f"<p>Ensemble weight of twins that recommend another scenario than the ensemble: {float(d.weight_against_ensemble.sel(target=tg)):.2f}; "
                f"probability, given the Monte Carlo error, that the twins recommend different scenarios: {float(d.p_recommend_differently.sel(target=tg)):.2f}.</p>"
            )
        rows = [
            [
                str(sc),
                str(q),
                _share_cell(d, sc, q),
                " / ".join(
                    f"{float(d.qoi_mean.sel(source=s, scenario=sc, qoi=q)):.3g}"
                    for s in d.source.values
                ),
            ]
            for sc in d.scenario.values
            for q in d.qoi.values
        ]
        parts.append(
            "<h3>Quantities of interest</h3>"
            + _table(
                [
                    "scenario",
                    "QoI",
                    "between-twin share ± MCSE [90 % over weights; equal weights]",
                    "mean (" + " / ".join(map(str, d.source.values)) + ")",
                ],
                rows,
                left=2,
            )
        )
    return parts


def _provenance_section(provenance: dict) -> list[str]:
    """Versions, hashes, seeds, command (the only non-deterministic part)."""
    parts: list[str] = []
    parts.append("<section id='provenance'><h2>Provenance</h2>")
    parts.append(
        f"<pre>{html.escape(json.dumps(provenance, indent=2, default=str))}</pre></section>"
    )
    return parts


def write_report(folder: str | Path) -> Path:
    """Write ``report.html`` into a results folder from the files in it.

    The report holds the study, each twin's convergence diagnostics and
    posterior summary, PPC and LOO-PIT figures, the comparison table with the
    weights and their uncertainty, averaged predictions, the scenario
    disagreement (figures and tables, with Monte Carlo errors) and the
    provenance.  Everything but the provenance section is a deterministic
    function of the results (same seed, same report).
    """
    folder = Path(folder)
    summary_doc = json.loads((folder / "summary.json").read_text())
    summary = summary_doc["twins"]
    provenance = json.loads((folder / "provenance.json").read_text())
    study = (
        tomllib.loads((folder / "study.toml").read_text())
        if (folder / "study.toml").exists()
        else {}
    )
    figs = folder / "figures"
    parts = [
        *_head_section(folder, study, provenance),
        *_outcome_section(summary, summary_doc.get("outcome", {})),
        *_convergence_section(summary),
        *_posterior_section(folder, summary, figs),
        *_comparison_section(folder, figs),
        *_disagreement_section(folder, figs),
        *_provenance_section(provenance),
    ]
    parts.append("</body></html>")
    target = folder / "report.html"
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(target)
    return target
