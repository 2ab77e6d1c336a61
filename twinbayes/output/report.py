"""The self-contained HTML report of a results folder (figures embedded, no external files).

The report opens with the answer to the study's question, in words, for every target; then the
decision figures, the quantities of interest with their intervals, the comparison, each twin's
convergence and posterior, and the provenance, collapsed.  It is rendered by Jinja2 with
autoescaping on (every value from a spec, study or data file is text, never markup) and carries a
Content-Security-Policy that allows no script and no external resource.
"""

from __future__ import annotations

import base64
import json
import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
import xarray as xr

from ..error import ResultsFolderError
from ..fitting.mc_error import format_estimate, mcse_estimable
from ..inputs.untrusted import (
    checked_in_folder,
    exists_in_folder,
    read_in_folder,
    replace_in_folder,
)
from .results import OutputError
from .results_reading import check_results_folder, read_json, read_study_copy, read_summary

__all__ = ["write_report", "answers"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1150px;margin:1.2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.5em;margin:.1em 0} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em;font-size:1.2em}
.lead{margin:.3em 0} .answer{background:#f3f8ff;border:1px solid #bcd3f0;border-radius:6px;padding:.2em 1em .6em}
.answer h2{border:none;margin-top:.4em} .verdict{font-size:1.15em;font-weight:600;margin:.3em 0}
.answer ul{margin:.2em 0 .6em;padding-left:1.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em} th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left} .fail{color:#b00;font-weight:600} .pass{color:#070;font-weight:600}
img{max-width:100%;border:1px solid #eee;margin:.5em 0} .figs img{max-width:49%}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.5em 0}
.muted{color:#666;font-size:.85em} pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
details{margin:.4em 0} summary{cursor:pointer;font-weight:600}
"""

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("twinbayes", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Answer:
    """The plain-language answer for one target: a verdict and the figures behind it."""

    target: str
    verdict: str
    lines: list[str]


MAX_FIGURE_BYTES = 20_000_000
"""Largest PNG embedded (a figure of twinbayes is well under 1 MB)."""
PNG = b"\x89PNG\r\n\x1a\n"


def _figure(folder: Path, rel: str, alt: str) -> dict | None:
    """The figure ``rel`` of the folder as a data URI (``None`` when there is none).

    Read without following a link (:func:`~twinbayes.inputs.untrusted.read_in_folder`) and embedded
    only if it is a PNG file: a results folder is untrusted, and its figures are the one thing
    copied into the report byte for byte.
    """
    if not exists_in_folder(folder, rel):
        return None
    data = read_in_folder(folder, rel, MAX_FIGURE_BYTES)
    if not data.startswith(PNG):
        raise ResultsFolderError(
            f"{folder / rel}: not a PNG image; a results folder's figures are twinbayes' own PNG "
            "files (was it changed by hand?): run the study again"
        )
    return {"alt": alt, "src": "data:image/png;base64," + base64.b64encode(data).decode()}


def _fmt(x, digits=3) -> str:
    return f"{x:.{digits}g}" if isinstance(x, (float, np.floating)) else str(x)


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.0f} %"


def _value(d: xr.Dataset, var: str, **sel) -> float:
    return float(d[var].sel(**sel)) if var in d else float("nan")


def _preference(d: xr.Dataset, target: str, twins: list[str]) -> tuple[str, str]:
    """(scenario the ensemble prefers, sentence on which twins agree)."""
    best = {s: str(d.best_scenario.sel(source=s, target=target).values) for s in d.source.values}
    choice = best["ensemble"]
    against = [t for t in twins if best[t] != choice]
    if not against:
        who = "all twins" if len(twins) > 1 else f"the only twin ({twins[0]})"
        return choice, f"{target}: {choice}. {who.capitalize()} and the ensemble prefer it"
    others = "; ".join(f"{t} prefers {best[t]}" for t in against)
    return choice, f"{target}: {choice} is the ensemble's choice, but the twins disagree: {others}"


def _target_qoi(study: dict, target: str) -> str | None:
    for t in study.get("targets", []):
        if t.get("name", t.get("qoi")) == target:
            return t.get("qoi")
    return None


def _qoi_end(study: dict, qoi: str | None) -> float | None:
    """The latest time a QoI of the study reads (``at``, or the end of its ``window``)."""
    for q in study.get("qois", []):
        if isinstance(q, dict) and q.get("name") == qoi:
            at, window = q.get("at"), q.get("window")
            if isinstance(at, (int, float)):
                return float(at)
            if isinstance(window, list) and len(window) == 2:
                return float(window[1])
    return None


def _extrapolation(
    d: xr.Dataset, study: dict, target: str, last_obs: tuple[float, str] | None, twins: list[str]
) -> list[str]:
    """A line when the target's QoI lies after the last level: no level checks it there; how far
    the twins' own forecasts were checked, and which twins' predictions were widened."""
    qoi = _target_qoi(study, target)
    end = _qoi_end(study, qoi)
    if last_obs is None or end is None or not end > last_obs[0]:
        return []
    last, unit = last_obs
    line = (
        f"This decision is an extrapolation: '{qoi}' is read at t = {end:g} {unit}, "
        f"{end - last:g} {unit} after the last level (t = {last:g} {unit}); no level checks the "
        "twins' predictions there, and a twin that fits the levels can still be wrong there."
    )
    record = forward_record(d)
    if record is None:
        return [line + " Forward widening is off: these are the plain posteriors."]
    found = {t: record[t] for t in twins if t in record}
    longest = max((r[1] for r in found.values()), default=0.0)
    if longest > 0:
        line += (
            f" The twins' forecasts of this patient's own levels were checked up to "
            f"{longest:.3g} {unit} ahead; the decision lies {(end - last) / longest:.1f} times "
            "as far."
        )
    widened = [
        f"{t} (log SD +{np.sqrt(r[0] * (end - last)):.2f})" for t, r in found.items() if r[0] > 0
    ]
    if widened:
        line += (
            " Widened past the last level because their forecasts of later levels missed by "
            f"more than they expected: {', '.join(widened)}."
        )
    elif found:
        line += " No twin's forecasts of later levels missed clearly more than it expected."
    return [line]


def _non_negative(value: object) -> float:
    """``value`` if it is a finite non-negative number (not a bool), else 0."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if number and math.isfinite(value) and value >= 0 else 0.0


def forward_record(d: xr.Dataset) -> dict[str, tuple[float, float]] | None:
    """Per twin, the forward discrepancy's rate and longest checked forecast, from the
    ``forward`` attribute of ``disagreement.nc`` (untrusted: only names among the sources and
    finite non-negative numbers are kept; a rate that is not estimable counts as 0).
    ``None`` when widening was off."""
    raw = d.attrs.get("forward", "")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    twins = doc.get("twins") if isinstance(doc, dict) else None
    if not isinstance(twins, dict):
        return None
    sources = {str(s) for s in d.source.values}
    out = {}
    for name, r in twins.items():
        if name not in sources or not isinstance(r, dict):
            continue
        rate, longest = r.get("rate"), r.get("longest_checked")
        out[name] = (_non_negative(rate), _non_negative(longest))
    return out


def _answer(
    d: xr.Dataset,
    study: dict,
    target: str,
    misfitting: frozenset = frozenset(),
    last_obs: tuple[float, str] | None = None,
) -> Answer:
    """Verdict, P(target) across twins and for the ensemble, share of disagreement, robustness.

    Twins excluded from the ensemble (failed their gate) do not vote: they are named as
    excluded, with their own P, never as the twin that disagrees.  When every voting twin
    failed a misfit check (``misfitting``), the verdict says that no twin supports the answer
    instead of stating a preference; a target read after the last level (``last_obs``: time
    and unit) is said to be an extrapolation.
    """
    excluded = [n.strip() for n in str(d.attrs.get("excluded", "")).split(",") if n.strip()]
    twins = [str(s) for s in d.source.values if s != "ensemble" and str(s) not in excluded]
    twins = twins or [str(s) for s in d.source.values if s != "ensemble"]
    choice, verdict = _preference(d, target, twins)
    if twins and set(twins) <= misfitting:
        verdict = (
            f"No twin fits this patient's data ({', '.join(twins)}: each failed a misfit check), "
            f"so no twin supports an answer for {target}; the figures below are what the twins "
            "would say, not a recommendation."
        )
    at = {"scenario": choice, "target": target}
    p_twins = [_value(d, "p_meets", source=t, **at) for t in twins]
    p_ens, p_mcse = (
        _value(d, "p_meets", source="ensemble", **at),
        _value(d, "p_meets_mcse", source="ensemble", **at),
    )
    lo, hi = _value(d, "p_meets_ensemble_q05", **at), _value(d, "p_meets_ensemble_q95", **at)
    spread = f"{min(p_twins):.2f}-{max(p_twins):.2f} across twins" if len(twins) > 1 else ""
    equal = _value(d, "p_meets_equal", **at)
    lines = [
        f"P({target}) under {choice}: {spread}{'; ' if spread else ''}ensemble "
        f"{_probability(p_ens, p_mcse)}"
        + (" (Monte Carlo SE)" if mcse_estimable(p_ens, p_mcse, (0.0, 1.0)) else "")
        + (f"; {lo:.2f}-{hi:.2f} over weights the data support about as well" if lo == lo else "")
        + (f"; {equal:.2f} with equal weights." if equal == equal else ".")
    ]
    if "p_meets_plain" in d:
        plain = _value(d, "p_meets_plain", source="ensemble", **at)
        if abs(plain - p_ens) >= 0.005:
            lines[-1] = lines[-1][:-1] + f"; {plain:.2f} from the plain posteriors (not widened)."
    lines = (  # first: is it robust, and do the levels vouch for it?
        _extrapolation(d, study, target, last_obs, twins)
        + _depends_on_belief(d, target, choice, excluded)
        + lines
    )
    reference = str(d.scenario.values[0])
    if choice != reference:
        diff = _value(d, "p_meets_diff", source="ensemble", **at)
        diff_se = _value(d, "p_meets_diff_mcse", source="ensemble", **at)
        lines.append(f"Compared with {reference}: {diff:+.2f} ± {diff_se:.2f} (ensemble).")
    qoi = _target_qoi(study, target)
    if qoi is not None and qoi in d.qoi.values:
        share = _value(d, "qoi_between_share", scenario=choice, qoi=qoi)
        q95 = _value(d, "qoi_between_share_q95", scenario=choice, qoi=qoi)
        lines.append(
            f"Share of the uncertainty in '{qoi}' that comes from the twins disagreeing: {_pct(share)}"
            + (f" (up to {_pct(q95)} over the weights)" if q95 == q95 else "")
            + "; the rest is each twin's own uncertainty."
        )
    lines.append(
        f"Probability that the twins recommend different scenarios, given the Monte Carlo error: "
        f"{_value(d, 'p_recommend_differently', target=target):.2f}; that the ensemble's choice "
        f"changes under the weights' uncertainty: {_value(d, 'p_ensemble_choice_changes', target=target):.2f}."
    )
    return Answer(target, verdict, lines)


def _probability(p: float, mcse: float) -> str:
    """P with its MCSE for the answer box: two decimals, the MCSE to its first significant digit
    where it is below 0.005 (never ``± 0.00``), or the words of :mod:`~twinbayes.fitting.mc_error`."""
    if mcse_estimable(p, mcse, (0.0, 1.0)) and 0 < mcse < 0.005:
        return f"{p:.2f} ± {mcse:.1g}"
    return format_estimate(p, mcse, 2, (0.0, 1.0), pm="±")


def _depends_on_belief(d: xr.Dataset, target: str, choice: str, excluded: list[str]) -> list[str]:
    """Whether the choice would change with equal weights, and what excluded twins would say."""
    lines = []
    if "p_meets_equal" in d:
        equal = d.p_meets_equal.sel(target=target)
        if np.all(np.isfinite(equal.values)):
            best = str(d.scenario.values[int(np.argmax(equal.values))])
            if best != choice:
                lines.append(
                    f"The choice depends on which twin is believed: with equal weights on the "
                    f"converged twins it would be {best} "
                    f"(P {float(equal.sel(scenario=best)):.2f} against "
                    f"{float(equal.sel(scenario=choice)):.2f} for {choice})."
                )
    for name in excluded:
        if name in d.source.values:
            p = _value(d, "p_meets", source=name, scenario=choice, target=target)
            lines.append(
                f"Excluded (failed its convergence gate; no vote, no weight): {name}, "
                f"whose unvalidated draws give P {p:.2f} under {choice}."
            )
    return lines


def answers(
    d: xr.Dataset,
    study: dict,
    misfitting: frozenset = frozenset(),
    last_obs: tuple[float, str] | None = None,
) -> list[Answer]:
    """The plain-language answer for every target of a disagreement dataset (``misfitting``:
    the twins with a misfit warning, :mod:`twinbayes.fitting.caveats`; ``last_obs``: the time and unit
    of the last level, from ``history.json``)."""
    return [_answer(d, study, str(t), misfitting, last_obs) for t in d.target.values]


def last_level(folder: Path) -> tuple[float, str] | None:
    """Time and unit of the last level of the folder's latest run (``history.json``)."""
    if not exists_in_folder(folder, "history.json"):
        return None
    entries = read_json(folder, "history.json", list)
    last = entries[-1] if entries else None
    if not isinstance(last, dict) or not isinstance(last.get("last_time"), (int, float)):
        return None
    return float(last["last_time"]), str(last.get("time_unit", ""))


def misfitting_twins(summary: dict) -> frozenset:
    """Names of the twins whose warnings in ``summary.json`` include a misfit."""
    return frozenset(
        name
        for name, t in summary.items()
        if any(isinstance(w, str) and w.startswith("misfit") for w in t.get("warnings", []))
    )


def _excluded_note(d: xr.Dataset) -> tuple[str, str]:
    """(warning on twins excluded or a too small ensemble, neutral note on zero-weight twins)."""
    attrs = d.attrs
    warning = ""
    if attrs.get("excluded") or attrs.get("n_ensemble", 2) < 2:
        warning = "excluded from the ensemble (failed the convergence gate): " + str(
            attrs.get("excluded") or "-"
        )
        if attrs.get("n_ensemble", 2) < 2:
            warning += "; with fewer than two twins in the ensemble the between-twin share is undefined (n/a), not 0"
    note = ""
    if attrs.get("zero_weight"):
        note = (
            f"weight 0 from the comparison: {attrs['zero_weight']} (it adds nothing to the "
            "ensemble's predictions beyond the other twins; it still counts in 'across twins')"
        )
    return warning, note


def _comparison_headline(t: xr.Dataset, weights: str) -> str:
    """Which twin predicts best out of sample and whether the others are distinguishable."""
    names = [str(n) for n in t.twin.values]
    column = weights if weights in t else "stacking"
    behind = [
        f"{n} {float(t.elpd_diff[i]):+.1f} ± {float(t.se_diff[i]):.1f}"
        for i, n in enumerate(names[1:], 1)
    ]
    close = [
        n for i, n in enumerate(names[1:], 1) if -float(t.elpd_diff[i]) < 2 * float(t.se_diff[i])
    ]
    text = f"Out of sample, {names[0]} predicts best (elpd {float(t.elpd[0]):.1f} ± {float(t.se[0]):.1f})"
    if behind:
        text += "; differences: " + ", ".join(behind)
        text += (
            f". Within 2 SE of the best, hence not distinguishable on these data: {', '.join(close)}"
            if close
            else ". Every other twin is more than 2 SE behind"
        )
    weights_text = ", ".join(f"{n} {float(t[column][i]):.2f}" for i, n in enumerate(names))
    label = {
        "stacking": "Stacking",
        "bayes_stacking": "Bayesian stacking",
        "pseudo_bma": "Pseudo-BMA+",
        "bma": "BMA",
    }.get(column, column)
    return text + f". {label} weights: {weights_text}." + _unreliable_weights(t, column)


def _unreliable_weights(t: xr.Dataset, column: str) -> str:
    """A warning naming twins whose weight rests on cross-validation refits that failed their gate."""
    if "elpd_reliable" not in t:
        return ""
    flagged = [
        f"{n} ({float(t[column][i]):.2f})"
        for i, n in enumerate(str(x) for x in t.twin.values)
        if not bool(t.elpd_reliable[i]) and float(t[column][i]) > 0
    ]
    if not flagged:
        return ""
    return (
        " UNRELIABLE weight: the elpd of "
        + ", ".join(flagged)
        + " rests on cross-validation refits that failed their convergence gate (see the comparison table)."
    )


def _share_cell(d: xr.Dataset, sc, q) -> str:
    """Between-twin share ± MCSE, its interval over weight draws and at equal weights (n/a where undefined)."""
    v, e, lo, hi, eq = (
        _value(d, f"qoi_between_share{k}", scenario=sc, qoi=q)
        for k in ("", "_mcse", "_q05", "_q95", "_equal")
    )
    cell = format_estimate(v, e, 3, (0.0, 1.0), pm="±")
    if lo == lo:
        cell += f" [{lo:.3f}-{hi:.3f}" + (f"; {eq:.3f}]" if eq == eq else "]")
    elif eq == eq:
        cell += f" [equal weights {eq:.3f}]"
    return cell


def _qoi_rows(d: xr.Dataset) -> list[dict]:
    """Per scenario and QoI: each source's mean [5 %, 95 %] and the between-twin share."""
    return [
        {
            "scenario": str(sc),
            "qoi": str(q),
            "cells": [
                f"{_value(d, 'qoi_mean', source=s, scenario=sc, qoi=q):.3g} "
                f"[{_value(d, 'qoi_q05', source=s, scenario=sc, qoi=q):.3g}-"
                f"{_value(d, 'qoi_q95', source=s, scenario=sc, qoi=q):.3g}]"
                for s in d.source.values
            ],
            "share": _share_cell(d, sc, q),
        }
        for sc in d.scenario.values
        for q in d.qoi.values
    ]


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


def _prior_text(sensitivity: dict) -> str:
    """Parameters whose prior conflicts with the data or dominates a weak likelihood."""
    worry = ("prior-data conflict", "strong prior, weak likelihood")
    flagged = [
        f"{n}: {v['diagnosis']} (prior {v['prior']:.2f}, likelihood {v['likelihood']:.2f}, "
        f"prior quantile {v['prior_quantile']:.3g})"
        for n, v in sensitivity.items()
        if v["diagnosis"] in worry
    ]
    return "; ".join(flagged) or ("none" if sensitivity else "-")


def _convergence_rows(summary: dict) -> list[dict]:
    """Gate verdict, diagnostics and escalation of every twin."""
    rows = []
    for name, s in summary.items():
        diag = s.get("diagnostics") or {
            "-": {"rhat": float("nan"), "ess_bulk": float("nan"), "ess_tail": float("nan")}
        }
        rows.append(
            {
                "name": name,
                "passed": s["converged"],
                "rhat": f"{max(d['rhat'] for d in diag.values()):.4f}",
                "ess": f"{min(min(d['ess_bulk'], d['ess_tail']) for d in diag.values()):.0f}",
                "divergent": s.get("divergent", "-"),
                "ladder": _ladder_text(s.get("gate_attempts", []), s["converged"]),
                "reasons": "; ".join(s["reasons"]) or "-",
                "prior": _prior_text(s.get("prior_sensitivity") or {}),
            }
        )
    return rows


def _posteriors(folder: Path, summary: dict, written: Mapping[str, xr.DataTree]) -> list[dict]:
    """Posterior median and 90 % interval and the checks figure of every fitted twin."""
    out = []
    for name, s in summary.items():
        if s.get("failed"):
            continue  # no posterior: the fit itself failed (its cause is in the convergence table)
        post = _read(folder, f"twins/{name}.nc", written, group="posterior")
        rows = []
        for var in post.data_vars:
            q = np.quantile(post[var].values, [0.05, 0.5, 0.95])
            rows.append([var, _fmt(q[1]), _fmt(q[0]), _fmt(q[2])])
        figure = _figure(
            folder,
            f"figures/{name}_checks.png",
            f"posterior predictive check and LOO-PIT of {name}",
        )
        out.append({"name": name, "rows": rows, "figure": figure})
    return out


def _comparison(folder: Path, written: Mapping[str, xr.DataTree]) -> dict | None:
    """The comparison table, its notes and the averaged predictions."""
    if "comparison.nc" not in written and not exists_in_folder(folder, "comparison.nc"):
        return None
    comp = _read(folder, "comparison.nc", written)
    t = comp["table"].to_dataset()
    header = ["twin", "elpd", "SE", "elpd diff", "SE diff", "p_loo", "stacking (90 % BB)"]
    header += ["pseudo-BMA+", "LOO-PIT p", "cv", "note"]
    rows = [
        [
            str(t.twin.values[i]),
            *(f"{float(t[v][i]):.2f}" for v in ("elpd", "se", "elpd_diff", "se_diff", "p_loo")),
            f"{float(t.stacking[i]):.2f} ({float(t.stacking_q05[i]):.2f}-{float(t.stacking_q95[i]):.2f})",
            f"{float(t.pseudo_bma[i]):.2f}",
            f"{float(t.loo_pit_p[i]):.2f}" if "loo_pit_p" in t else "-",
            str(t.cv_method.values[i]),
            str(t.note.values[i]) or "-",
        ]
        for i in range(t.sizes["twin"])
    ]
    figure = _figure(folder, "figures/average.png", "twins and their weighted average")
    return {
        "header": header,
        "rows": rows,
        "notes": json.loads(comp.attrs.get("notes", "[]")),
        "figures": [figure] if figure else [],
        "table": t,
    }


def _history(folder: Path) -> dict | None:
    """One row per run of the folder (from two runs on): data extent, weights, between-twin share."""
    entries = (
        read_json(folder, "history.json", list) if exists_in_folder(folder, "history.json") else []
    )
    if len(entries) < 2:
        return None
    twins = list(dict.fromkeys(n for e in entries for n in e["twins"]))
    scenarios = list(dict.fromkeys(s for e in entries for s in e.get("between_share", {})))
    header = ["run", "last observation", "observations"]
    header += [f"weight {n}" for n in twins] + [f"between-twin share: {s}" for s in scenarios]
    rows = [
        [
            str(i + 1),
            f"{e['last_time']:g} {e['time_unit']}",
            str(e["n_obs"]),
            *(_fmt(e["twins"].get(n, {}).get("stacking", float("nan")), 2) for n in twins),
            *(_pct(e.get("between_share", {}).get(s, float("nan"))) for s in scenarios),
        ]
        for i, e in enumerate(entries)
    ]
    figure = _figure(
        folder, "figures/history.png", "weights, elpd and between-twin share over time"
    )
    return {"header": header, "rows": rows, "figure": figure}


def _provenance_items(provenance: dict) -> list[tuple[str, str]]:
    """The provenance as readable key/value rows (the JSON itself is one click further)."""
    study = provenance.get("study") or {}
    patient = provenance.get("patient") or {}
    items = [
        ("created", provenance.get("created", "")),
        (
            "study",
            f"{study.get('name')} ({study.get('source')}; sha256 {str(study.get('sha256'))[:12]})",
        ),
        ("seed", str(study.get("seed", ""))),
        ("command", shlex.join(map(str, provenance.get("command", [])))),
        (
            "patient",
            f"{patient.get('id')} from {patient.get('source')} (sha256 {str(patient.get('sha256'))[:12]})",
        ),
        ("python", str(provenance.get("python", "")).split(" (")[0]),
        ("platform", str(provenance.get("platform", ""))),
        ("packages", ", ".join(f"{k} {v}" for k, v in (provenance.get("packages") or {}).items())),
        (
            "lock files",
            ", ".join(f"{k} {str(v)[:12]}" for k, v in (provenance.get("lock") or {}).items()),
        ),
    ]
    for name, t in (provenance.get("twins") or {}).items():
        settings = t.get("settings") or {}
        timings = t.get("timings_s") or {}
        items.append(
            (
                f"twin {name}",
                f"{t.get('spec')} (sha256 {str(t.get('spec_sha256'))[:12]}); "
                + ", ".join(f"{k} {v}" for k, v in settings.items())
                + "; "
                + ", ".join(
                    f"{k} {v:.1f} s" for k, v in timings.items() if isinstance(v, (int, float))
                ),
            )
        )
    return items


def _warnings(summary: dict) -> list[str]:
    """Every twin's warnings (:mod:`twinbayes.fitting.caveats`: misfit, prior-data conflict), named by
    twin; a summary from before warnings were kept shows its prior-data conflicts."""
    out = []
    for name, t in summary.items():
        if "warnings" not in t:
            out += _conflicts({name: t})
            continue
        out += [f"{name}: {line}" for line in t["warnings"] if isinstance(line, str)]
    return out


def _conflicts(summary: dict) -> list[str]:
    """One line per twin whose prior conflicts with the patient's data."""
    out = []
    for name, t in summary.items():
        params = [
            p
            for p, v in (t.get("prior_sensitivity") or {}).items()
            if v["diagnosis"] == "prior-data conflict"
        ]
        if params:
            out.append(
                f"prior-data conflict in twin {name}: {', '.join(params)} (its prior disagrees with "
                "this patient's data; see the twins table)"
            )
    return out


def _figures(folder: Path, d: xr.Dataset | None) -> dict[str, list]:
    """The decision figure of every target and the scenario figures, embedded."""
    targets = [str(t) for t in d.target.values] if d is not None else []
    scenario = [
        ("scenario_fans", "forecast fans per scenario"),
        ("disagreement_over_time", "between-twin share over time"),
    ]
    return {
        "decision_figures": [
            f
            for i, t in enumerate(targets)
            if (
                f := _figure(
                    folder, f"figures/{decision_figure_name(i)}", f"P({t}) per scenario and twin"
                )
            )
        ],
        "scenario_figures": [
            f for name, alt in scenario if (f := _figure(folder, f"figures/{name}.png", alt))
        ],
    }


def _head(folder: Path, summary_doc: dict, provenance: dict, study: dict) -> dict:
    """Title, description, patient pseudonym, data file, seed and the outcome line."""
    head = study.get("study", {})
    summary, outcome = summary_doc["twins"], summary_doc.get("outcome", {})
    failed = [n for n, t in summary.items() if not t["converged"]]
    why = outcome.get("skipped") or [
        f"failed the convergence gate after the escalation ladder: {', '.join(failed)}"
    ]
    patient = provenance.get("patient") or {}
    return {
        "css": CSS,
        "title": head.get("name", folder.name),
        "description": head.get("description", ""),
        "patient": patient.get("id"),
        "data_file": Path(str(patient.get("source"))).name,
        "seed": head.get("seed", ""),
        "n_twins": len(summary),
        "outcome": {**outcome, "why": "; ".join(why)} if outcome.get("code") else None,
    }


def _read(
    folder: Path, name: str, written: Mapping[str, xr.DataTree], group: str | None = None
) -> xr.DataTree | xr.Dataset:
    """The NetCDF file ``name`` of the folder (its ``group`` as a Dataset, or the whole tree), in
    memory: the tree just written there when ``written`` holds it, else read from the file."""
    if name in written:
        tree = written[name]
        return tree if group is None else tree[group].to_dataset()
    path = checked_in_folder(folder, name)
    try:
        if group is None:
            return xr.open_datatree(path, engine="h5netcdf")
        with xr.open_dataset(path, group=group, engine="h5netcdf") as stored:
            return stored.load()  # the one group shown: opening the whole tree reads every group
    except (OSError, ValueError, KeyError) as exc:
        raise ResultsFolderError(
            f"{path}: not a readable NetCDF file ({exc}); run the study again"
        ) from None


def _context(folder: Path, written: Mapping[str, xr.DataTree] | None = None) -> dict:
    """Everything the template shows, from the files of a results folder (NetCDF files in
    ``written`` from the trees just written into them, not read back).

    The folder is untrusted: it must carry twinbayes' marker, every file is read without
    following links, the twin names in ``summary.json`` must be names a spec may have, and a
    damaged file ends in :class:`~twinbayes.error.ResultsFolderError`, never a traceback.
    """
    written = written or {}
    check_results_folder(folder)
    summary_doc, summary = read_summary(folder)
    provenance = read_json(folder, "provenance.json", dict)
    study = read_study_copy(folder)
    try:
        return _render_context(folder, written, summary_doc, summary, provenance, study)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        if isinstance(exc, ResultsFolderError):
            raise
        raise ResultsFolderError(
            f"{folder}: a file of the results folder is damaged ({type(exc).__name__}: {exc}); "
            "run the study again"
        ) from exc


def _render_context(folder, written, summary_doc, summary, provenance, study) -> dict:
    comparison = _comparison(folder, written)
    d = None
    if "disagreement.nc" in written or exists_in_folder(folder, "disagreement.nc"):
        d = _read(folder, "disagreement.nc", written, group="/")  # the tables read it cell by cell
    weights = study.get("comparison", {}).get("weights", "stacking")
    return {
        **_head(folder, summary_doc, provenance, study),
        "answers": answers(d, study, misfitting_twins(summary), last_level(folder))
        if d is not None
        else [],
        "no_target_text": "The study defines no targets, so there is no decision to state; "
        "the comparison below says which twin predicts best.",
        "excluded_note": _excluded_note(d) if d is not None else ("", ""),
        "conflicts": _warnings(summary),
        "comparison_headline": _comparison_headline(comparison["table"], weights)
        if comparison
        else "",
        **_figures(folder, d),
        "qoi_rows": _qoi_rows(d) if d is not None else [],
        "qoi_sources": [str(s) for s in d.source.values] if d is not None else [],
        "comparison": comparison,
        "history": _history(folder),
        "convergence": _convergence_rows(summary),
        "posteriors": _posteriors(folder, summary, written),
        "provenance": _provenance_items(provenance),
        "provenance_json": json.dumps(provenance, indent=2, default=str),
    }


def decision_figure_name(index: int) -> str:
    """File name of the decision figure of the ``index``-th target (names from studies never become paths)."""
    return "decision_table.png" if index == 0 else f"decision_table_{index + 1}.png"


def write_report(folder: str | Path, written: Mapping[str, xr.DataTree] | None = None) -> Path:
    """Write ``report.html`` into a results folder from the files in it.

    The report opens with the answer for every target (the preferred scenario, P(target) across
    twins and for the ensemble with Monte Carlo and weight uncertainty, the share of the
    uncertainty that comes from the twins disagreeing), then the decision figures, the QoIs with
    90 % intervals, the comparison, each twin's convergence, posterior and checks, and the
    provenance (collapsed).  Everything but the provenance is a deterministic function of the
    results (same seed, same report).  ``written`` (name -> DataTree, from
    :attr:`~twinbayes.output.results.ResultsFolder.written`) spares reading back the NetCDF files a run
    has just written: the same report as from the files (tested).
    """
    folder = Path(folder)
    html = _ENV.get_template("report.html.j2").render(**_context(folder, written))
    try:
        return replace_in_folder(folder, "report.html", html.encode("utf-8"))
    except OSError as exc:
        raise OutputError(
            f"cannot write {folder / 'report.html'}: {exc.strerror or exc}; nothing was changed"
        ) from None
