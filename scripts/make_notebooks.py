# Writes the notebooks in notebooks/ (without outputs; the test suite executes them).
import nbformat as nbf

def nb(cells, path):
    n = nbf.v4.new_notebook()
    n.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    n.cells = [nbf.v4.new_markdown_cell(c[3:]) if c.startswith("md:") else nbf.v4.new_code_cell(c) for c in cells]
    nbf.write(n, path)

nb([
"md:# Competing PK twins of one patient\n\nThree pharmacokinetic twins of Theophylline subject 4 (Boeckmann, Sheiner & Beal 1994; R `datasets::Theoph`): one compartment, one compartment with an absorption lag, two compartments. Each is fitted by NUTS, gated on convergence, checked (posterior predictive, LOO-PIT) and compared out of sample.",
"import numpy as np\nimport matplotlib.pyplot as plt\nimport twinbayes as tb\nfrom twinbayes.fit import fit\nfrom twinbayes.compare import compare\nfrom twinbayes.library import data_path\nfrom twinbayes.plots import plot_twin_checks, plot_average\n\npatient = tb.Patient.from_csv(data_path('theophylline.csv'), subject=4)\npatient",
"md:## Fit every twin (seeded; same seed, same numbers)",
"twins = [fit(tb.load_spec(name), patient, seed=i, draws=1000) for i, name in enumerate(['pk_1cmt_oral', 'pk_1cmt_oral_lag', 'pk_2cmt_oral'], 1)]\nfor t in twins:\n    print(t)",
"twins[0].summary()",
"md:## Checks: posterior predictive and LOO-PIT calibration",
"for t in twins:\n    plot_twin_checks(t)\n    plt.show()",
"md:## Out-of-sample comparison\n\nPSIS-LOO with exact refits where Pareto k is high; stacking weights with their Bayesian-bootstrap uncertainty; pseudo-BMA+.",
"comparison = compare(twins, seed=1, include_unconverged=True)\nprint(comparison)\nassert abs(comparison.table.stacking.sum() - 1) < 1e-9",
"plot_average(twins, comparison.weights, until=36)\nplt.show()",
], "notebooks/01_pk_twin_comparison.ipynb")

nb([
"md:# Tumour growth laws as competing twins\n\nLewis lung carcinoma volumes in mice (Benzekry et al. 2014, PLoS Comput Biol 10:e1003800; data via Vaghi et al. 2020). Six growth laws -- exponential, exponential-linear, logistic, Gompertz, power law, von Bertalanffy -- are fitted to each of the first mice and compared by PSIS-LOO (exact refits where Pareto k is high). Benzekry et al. found the Gompertz and power laws the most parsimonious descriptions of this data; with three mice this notebook is a demonstration, not a replication.",
"import numpy as np\nimport matplotlib.pyplot as plt\nimport twinbayes as tb\nfrom twinbayes.fit import fit\nfrom twinbayes.compare import compare\nfrom twinbayes.library import data_path\nfrom twinbayes.plots import plot_ppc\n\nLAWS = ['tumor_exponential', 'tumor_exponential_linear', 'tumor_logistic', 'tumor_gompertz', 'tumor_power_law', 'tumor_bertalanffy']\nspecs = [tb.load_spec(n) for n in LAWS]",
"rows = []\nfits = {}\nfor mouse in range(3):\n    patient = tb.Patient.from_csv(data_path('benzekry_llc_tumor_volume.csv'), subject=mouse)\n    twins = [fit(s, patient, seed=10 * mouse + i, draws=1000) for i, s in enumerate(specs)]\n    for t in twins:\n        print(t)\n    fits[mouse] = twins\n    comp = compare(twins, seed=mouse)  # twins that fail their convergence gate get no weight\n    print(comp)\n    for name in LAWS:\n        r = comp.table.sel(twin=name)\n        rows.append((mouse, name, float(r.elpd), float(r.se), float(r.stacking), bool(r.converged)))\nfor r in rows:\n    print('mouse {:>2}  {:<26} elpd {:8.2f} +- {:5.2f}  stacking {:4.2f}  converged {}'.format(*r))",
"md:Sum of elpd over the mice (higher is better) and how often each law gets the largest stacking weight:",
"totals = {n: sum(r[2] for r in rows if r[1] == n) for n in LAWS}\nbest = {n: sum(1 for m in range(3) if max((r for r in rows if r[0] == m), key=lambda r: r[4])[1] == n) for n in LAWS}\nfor n in sorted(LAWS, key=lambda n: -totals[n]):\n    print(f'{n:<26} total elpd {totals[n]:8.2f}   largest stacking weight in {best[n]} of 3 mice')",
"fig, axes = plt.subplots(2, 3, figsize=(15, 8))\naxes = axes.ravel()\nfor ax, twin in zip(axes, fits[0]):\n    plot_ppc(twin, ax)\n    ax.set_yscale('log')\nplt.show()",
], "notebooks/02_tumour_growth_comparison.ipynb")

nb([
"md:# Dosing scenarios: how much do the twins disagree?\n\nTheophylline subject 1. Two regimens with the same daily dose -- 320 mg every 12 h or 160 mg every 6 h -- simulated under three PK twins and their stacking ensemble. Question: what is the probability that the concentration stays within the therapeutic window of 10-20 mg/L throughout day 3, and how much of the uncertainty comes from not knowing which twin is right?",
"import numpy as np\nimport matplotlib.pyplot as plt\nimport twinbayes as tb\nfrom twinbayes.fit import fit\nfrom twinbayes.compare import compare\nfrom twinbayes.library import data_path\nfrom twinbayes.scenarios import Scenario\nfrom twinbayes.qoi import Cmax, ValueAt, StaysInRange, Target\nfrom twinbayes.disagreement import disagreement\nfrom twinbayes.plots import plot_scenario_fans, plot_disagreement_over_time, plot_decision_table\n\npatient = tb.Patient.from_csv(data_path('theophylline.csv'), subject=1)\ntwins = [fit(tb.load_spec(n), patient, seed=i, draws=1000) for i, n in enumerate(['pk_1cmt_oral', 'pk_1cmt_oral_lag', 'pk_2cmt_oral'], 1)]\ncomparison = compare(twins, seed=1, include_unconverged=True)\nprint(comparison)",
"scenarios = [Scenario.regimen('320 mg q12h', 320, 'oral', interval=12, n_doses=6),\n             Scenario.regimen('160 mg q6h', 160, 'oral', interval=6, n_doses=12)]\nday3 = (48.0, 72.0)\nstays = StaysInRange(10, 20, day3, name='stays in 10-20 mg/L on day 3')\nresult = disagreement(twins, comparison.weights, scenarios, np.linspace(0, 72, 289),\n                      qois=[Cmax(day3, name='Cmax day 3'), ValueAt(72.0, name='trough 72 h')],\n                      targets=[Target(stays, lower=1, name=stays.name)])\nprint(result)",
"plot_scenario_fans(result, band=(10, 20)); plt.show()\nplot_disagreement_over_time(result); plt.show()\nplot_decision_table(result); plt.show()",
"md:Every probability comes with its Monte Carlo standard error (block jackknife over the MCMC draws). The between-twin share is the part of the ensemble's predictive variance that would vanish if we knew which twin is right.",
"result.data[['p_meets', 'p_meets_mcse']].to_dataframe()",
], "notebooks/03_dosing_scenario_disagreement.ipynb")
