# Writes the notebooks in notebooks/ (without outputs; the test suite executes them).
# Exception: 02 is committed with the outputs of its full 20-mouse run; after regenerating it,
# execute it with nbclient (about 15 min) before committing.
import nbformat as nbf


def nb(cells, path):
    n = nbf.v4.new_notebook()
    n.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    n.cells = [
        nbf.v4.new_markdown_cell(c[3:]) if c.startswith("md:") else nbf.v4.new_code_cell(c)
        for c in cells
    ]
    nbf.write(n, path)


nb(
    [
        "md:# Competing PK twins of one patient\n\nThree pharmacokinetic twins of Theophylline subject 4 (Boeckmann, Sheiner & Beal 1994; R `datasets::Theoph`): one compartment, one compartment with an absorption lag, two compartments. Each is fitted by NUTS, gated on convergence, checked (posterior predictive, LOO-PIT) and compared out of sample.",
        "import numpy as np\nimport matplotlib.pyplot as plt\nimport twinbayes as tb\nfrom twinbayes.fitting import fit\nfrom twinbayes.comparison import compare\nfrom twinbayes.library import data_path\nfrom twinbayes.plots import plot_twin_checks, plot_average\n\npatient = tb.Patient.from_csv(data_path('theophylline.csv'), subject=4)\npatient",
        "md:## Fit every twin (seeded; same seed, same numbers)",
        "twins = [fit(tb.load_spec(name), patient, seed=i, draws=1000) for i, name in enumerate(['pk_1cmt_oral', 'pk_1cmt_oral_lag', 'pk_2cmt_oral'], 1)]\nfor t in twins:\n    print(t)",
        "twins[0].summary()",
        "md:## Checks: posterior predictive and LOO-PIT calibration",
        "for t in twins:\n    plot_twin_checks(t)\n    plt.show()",
        "md:## Out-of-sample comparison\n\nPSIS-LOO with exact refits where Pareto k is high; stacking weights with their Bayesian-bootstrap uncertainty; pseudo-BMA+.",
        "print('failed the gate after the escalation ladder:', [t.name for t in twins if not t.converged] or 'none')\ncomparison = compare(twins, seed=1)  # twins that failed the gate get no weight\nprint(comparison)\nassert abs(comparison.table.stacking.sum() - 1) < 1e-9",
        "plot_average(twins, comparison.weights, until=36)\nplt.show()",
    ],
    "notebooks/01_pk_twin_comparison.ipynb",
)

nb(
    [
        "md:# Tumour growth laws as competing twins: the lung data of Benzekry et al. (2014)\n\nLewis lung carcinoma volumes of 20 mice (Benzekry et al. 2014, PLoS Comput Biol 10:e1003800; data as distributed by Vaghi et al. 2020, PLoS Comput Biol 16:e1007178). Six growth laws -- exponential, exponential-linear, logistic, Gompertz, power law, von Bertalanffy -- are fitted to every mouse by NUTS and compared by their out-of-sample predictive performance (PSIS-LOO, exact refits where Pareto k is high). Benzekry et al. found the Gompertz and power laws the most parsimonious descriptions of these data. Do twinbayes' fully Bayesian comparisons point the same way?\n\nThe stored outputs are from a run over all 20 mice; the test suite re-executes the notebook on the first 3 (`TWINBAYES_NOTEBOOK_QUICK=1`).",
        "import os\nimport numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt\nimport twinbayes as tb\nfrom twinbayes.fitting import fit\nfrom twinbayes.comparison import compare\nfrom twinbayes.library import data_path\nfrom twinbayes.plots import plot_ppc\n\nLAWS = ['tumor_exponential', 'tumor_exponential_linear', 'tumor_logistic', 'tumor_gompertz', 'tumor_power_law', 'tumor_bertalanffy']\nspecs = [tb.load_spec(n) for n in LAWS]\nDATA = data_path('benzekry_llc_tumor_volume.csv')\nmice = sorted(pd.read_csv(DATA).subject.unique())\nif os.environ.get('TWINBAYES_NOTEBOOK_QUICK'):\n    mice = mice[:3]\nlen(mice)",
        "def fit_gated(spec, patient, seed):\n    \"\"\"Fit; if the convergence gate fails, fit once more with twice the warm-up and draws (reported).\"\"\"\n    twin = fit(spec, patient, seed=seed)\n    if not twin.converged:\n        print(f'  {spec.name}, mouse {patient.id}: {twin.reasons[:2]} -> refit with 2x warm-up and draws')\n        twin = fit(spec, patient, seed=seed + 50_000, tune=2000, draws=4000)\n    return twin\n\nrows, fits, comps = [], {}, {}\nfor mouse in mice:\n    patient = tb.Patient.from_csv(DATA, subject=mouse)\n    twins = [fit_gated(s, patient, seed=100 * int(mouse) + i) for i, s in enumerate(specs)]\n    fits[mouse] = twins\n    comp = compare(twins, seed=int(mouse), n_bootstrap=100)  # twins that fail their gate get no weight, and are shown\n    comps[mouse] = comp\n    t = comp.table\n    for name in LAWS:\n        r = t.sel(twin=name)\n        rows.append(dict(mouse=mouse, law=name.removeprefix('tumor_'), elpd=float(r.elpd), elpd_diff=float(r.elpd_diff), se_diff=float(r.se_diff),\n                         stacking=float(r.stacking), converged=bool(r.converged)))\n    print(f'mouse {mouse}: ' + ', '.join(f\"{n.removeprefix('tumor_')} {float(t.sel(twin=n).elpd):.1f}\" for n in LAWS))\nper_mouse = pd.DataFrame(rows)",
        "md:## Ranking by predictive performance, per mouse\n\nFor each mouse the laws are ranked by elpd-LOO (1 = best; unconverged fits rank last). A law counts as *among the best* for a mouse when its elpd is within 2 standard errors of the difference from the best law's (the usual reading of a LOO comparison, Vehtari et al. 2017).",
        "per_mouse['rank'] = per_mouse.elpd.where(per_mouse.converged, -np.inf).groupby(per_mouse.mouse).rank(ascending=False, method='min').astype(int)\nper_mouse['among_best'] = per_mouse.converged & (per_mouse.elpd_diff.abs() <= 2 * per_mouse.se_diff.fillna(0))\nsummary = per_mouse.groupby('law').agg(mean_rank=('rank', 'mean'), best_in=('rank', lambda r: int((r == 1).sum())),\n                                      among_best_in=('among_best', 'sum'), total_elpd=('elpd', 'sum'),\n                                      mean_stacking=('stacking', 'mean'), converged=('converged', 'sum'))\nsummary = summary.sort_values('mean_rank')\nsummary",
        "per_mouse.pivot(index='mouse', columns='law', values='rank')",
        "md:## Over all mice: total elpd and its standard error\n\nThe mice are independent, so elpd differences add up over mice and their variances too (each mouse's difference and SE from its pairwise LOO comparison). Differences from the law with the largest total:",
        "totals = per_mouse.groupby('law').elpd.sum().sort_values(ascending=False)\nlead = 'tumor_' + totals.index[0]\nrows_total = []\nfor law in totals.index:\n    name = 'tumor_' + law\n    d = sum(float(comps[m].pairwise.elpd_diff.sel(twin=lead, other=name)) for m in mice) if name != lead else 0.0\n    se = np.sqrt(sum(float(comps[m].pairwise.se_diff.sel(twin=lead, other=name)) ** 2 for m in mice)) if name != lead else 0.0\n    rows_total.append(dict(law=law, total_elpd=totals[law], diff_from_best=-d, se=se))\ntotal_table = pd.DataFrame(rows_total).set_index('law')\ntotal_table",
        "fig, ax = plt.subplots(figsize=(8, 4))\norder = summary.index.tolist()\nax.boxplot([per_mouse.loc[per_mouse.law == l, 'rank'] for l in order], tick_labels=order)\nax.set_ylabel('rank by elpd-LOO (1 = best)')\nax.set_title(f'Growth laws over {len(mice)} mice (Lewis lung carcinoma)')\nplt.xticks(rotation=30)\nplt.show()",
        "fig, axes = plt.subplots(2, 3, figsize=(15, 8))\nfor ax, twin in zip(axes.ravel(), fits[mice[0]]):\n    plot_ppc(twin, ax)\n    ax.set_yscale('log')\nplt.show()",
        "md:**Reading** (numbers from the stored run over 20 mice). Summed over mice, the Gompertz law is in the leading group by out-of-sample predictive performance: logistic, exponential-linear and Gompertz are indistinguishable (total elpd differences -1.0 +- 4.2 and -3.2 +- 6.1 from the logistic). The power law comes next (-14.2 +- 7.8, 1.8 SE behind), the exponential (-43.6 +- 10.1) and von Bertalanffy (-105.9 +- 12.4) laws are clearly worse. This reproduces the direction of Benzekry et al. (2014) for Gompertz (among the best) and, more weakly, for the power law (ahead of the exponential and Bertalanffy laws, behind the leading group); their criteria were goodness of fit penalised for parameters and identifiability, ours is the expected log predictive density of a left-out measurement. Per mouse (7-13 points) the differences are small against their standard errors, and the ranking changes from mouse to mouse; the evidence is in the sum. Fits that failed the convergence gate after one refit with twice the draws (power law in 4 mice, Gompertz in 2, exponential-linear in 1; divergences or low tail ESS) are listed above, ranked last for their mouse and given no stacking weight.",
    ],
    "notebooks/02_tumour_growth_comparison.ipynb",
)

nb(
    [
        "md:# Dosing scenarios: how much do the twins disagree?\n\nTheophylline subject 1. Two regimens with the same daily dose -- 320 mg every 12 h or 160 mg every 6 h -- simulated under three PK twins and their stacking ensemble. Question: what is the probability that the concentration stays within the therapeutic window of 10-20 mg/L throughout day 3, and how much of the uncertainty comes from not knowing which twin is right?",
        "import numpy as np\nimport matplotlib.pyplot as plt\nimport twinbayes as tb\nfrom twinbayes.fitting import fit\nfrom twinbayes.comparison import compare\nfrom twinbayes.library import data_path\nfrom twinbayes.scenarios import Scenario\nfrom twinbayes.qoi import Cmax, ValueAt, StaysInRange, Target\nfrom twinbayes.twin_disagreement import disagreement\nfrom twinbayes.plots import plot_scenario_fans, plot_disagreement_over_time, plot_decision_table\n\npatient = tb.Patient.from_csv(data_path('theophylline.csv'), subject=1)\ntwins = [fit(tb.load_spec(n), patient, seed=i, draws=1000) for i, n in enumerate(['pk_1cmt_oral', 'pk_1cmt_oral_lag', 'pk_2cmt_oral'], 1)]\nprint('failed the gate after the escalation ladder:', [t.name for t in twins if not t.converged] or 'none')\ncomparison = compare(twins, seed=1)  # twins that failed the gate get no weight\nprint(comparison)",
        "scenarios = [Scenario.regimen('320 mg q12h', 320, 'oral', interval=12, n_doses=6),\n             Scenario.regimen('160 mg q6h', 160, 'oral', interval=6, n_doses=12)]\nday3 = (48.0, 72.0)\nstays = StaysInRange(10, 20, day3, name='stays in 10-20 mg/L on day 3')\nresult = disagreement(twins, comparison.weights, scenarios, np.linspace(0, 72, 289),\n                      qois=[Cmax(day3, name='Cmax day 3'), ValueAt(72.0, name='trough 72 h')],\n                      targets=[Target(stays, lower=1, name=stays.name)],\n                      weight_draws=comparison.weight_draws_of())  # shares carry the weights' uncertainty\nprint(result)",
        "plot_scenario_fans(result, band=(10, 20)); plt.show()\nplot_disagreement_over_time(result); plt.show()\nplot_decision_table(result); plt.show()",
        "md:Every probability comes with its Monte Carlo standard error (block jackknife over the MCMC draws). The between-twin share is the part of the ensemble's predictive variance that would vanish if we knew which twin is right.",
        "result.data[['p_meets', 'p_meets_mcse']].to_dataframe()",
    ],
    "notebooks/03_dosing_scenario_disagreement.ipynb",
)

nb(
    [
        "md:# Nonlinear twins: glucose-insulin and arterial haemodynamics\n\nTwo families of ODE twins without closed forms, solved by twinbayes' Dormand-Prince engine with forward sensitivities.\n\n**IVGTT.** One subject's frequently sampled intravenous glucose tolerance test (Pacini & Bergman 1986, MINMOD; data via ModSimPy). Measured insulin drives three glucose twins: the Bergman minimal model (remote insulin compartment), the same with a two-compartment (delayed) insulin action, and a model in which insulin acts at once.",
        "import numpy as np\nimport matplotlib.pyplot as plt\nimport twinbayes as tb\nfrom twinbayes.fitting import fit\nfrom twinbayes.comparison import compare\nfrom twinbayes.library import data_path\nfrom twinbayes.plots import plot_ppc, plot_average\n\nivgtt = tb.Patient.from_csv(data_path('ivgtt_pacini_bergman_1986.csv'))\nglucose = [fit(tb.load_spec(n), ivgtt, seed=i) for i, n in enumerate(['glucose_minimal', 'glucose_minimal_delay', 'glucose_direct'], 1)]\nfor t in glucose:\n    print(t, '| excluded (mixing phase):', [x[1] for x in t.excluded])\nglucose[0].summary()",
        "md:Insulin sensitivity `SI` and glucose effectiveness `SG` of the minimal model: MINMOD reports values of the order of 1e-4 to 1e-3 mL/uU/min and 0.01-0.03 /min for healthy subjects (Pacini & Bergman 1986).",
        "failed = [t.name for t in glucose if not t.converged]\nprint('failed the gate after the escalation ladder:', failed or 'none')\ncomparison = compare(glucose, seed=1, refit=False)  # failed twins get no weight\nprint(comparison)",
        "plot_average(glucose, comparison.weights)\nplt.show()",
        "md:**Windkessel.** Radial arterial pressure of MIMIC record 041 (Moody & Mark 1996) at 25 Hz, 8 s. No flow was recorded, so the inflow is *assumed*: a half-sine ejection of 60 mL per beat, starting at each beat onset found in the pressure, lasting Weissler's ejection time for the heart rate (`twinbayes.haemodynamics`, `scripts/make_windkessel_data.py`). R, C and Zc are therefore conditional on the assumed stroke volume. Three twins: two-element (R, C), three-element (+ characteristic impedance Zc), four-element (+ inertance L parallel to Zc).",
        "abp = tb.Patient.from_csv(data_path('mimicdb041_abp_assumed_inflow.csv'))\nwk = [fit(tb.load_spec(n), abp, seed=i) for i, n in enumerate(['windkessel2', 'windkessel3', 'windkessel4'], 1)]\nfor t in wk:\n    print(t)\nprint('failed the gate after the escalation ladder:', [t.name for t in wk if not t.converged] or 'none')\nwk_comparison = compare(wk, seed=1, refit=False)  # failed twins get no weight\nprint(wk_comparison)",
        "fig, axes = plt.subplots(3, 1, figsize=(11, 9), sharex=True)\nfor ax, twin in zip(axes, wk):\n    plot_ppc(twin, ax)\n    ax.set_title(twin.spec.title)\nplt.show()",
        "md:**Simulated pressure-flow pairs** (a three-element Windkessel with known parameters, 1 mmHg noise; `scripts/make_windkessel_data.py`): the twins are fitted where the truth is known (Zc 0.05, R 1.0, C 1.3, P0 80).",
        "sim = tb.Patient.from_csv(data_path('windkessel_simulated_pressure_flow.csv'))\nwk3 = fit(tb.load_spec('windkessel3'), sim, seed=5, draws=1000)\nprint(wk3)\nwk3.summary()",
    ],
    "notebooks/04_nonlinear_twins.ipynb",
)

nb(
    [
        "md:# Patient data from HL7 FHIR R4\n\nClinical data arrive as FHIR resources. This notebook reads the bundled example bundle -- Theophylline subject 1 (Boeckmann, Sheiner & Beal 1994; R `datasets::Theoph`) as a hospital system would export it, built by `scripts/make_fhir_examples.py` -- with the mapping its study file states, turns the bundle's MedicationRequests into dosing scenarios, converts units (UCUM, molar <-> mass with a stated molar mass), and runs the study. No name, identifier, address or birth date leaves the bundle: outputs carry a pseudonymous key.",
        "import json, os, dataclasses, tempfile\nfrom collections import Counter\nfrom pathlib import Path\nimport matplotlib.pyplot as plt\nimport pandas as pd\nimport twinbayes as tb\nfrom twinbayes.library import data_path\nfrom twinbayes.study import load_study, example_study_path\nfrom twinbayes.fhir import read_bundle, read_requests, FhirMapping\nfrom twinbayes.units import conversion_factor\n\npath = data_path('theophylline_1.fhir.json')\nbundle = json.loads(path.read_text())\nCounter(e['resource']['resourceType'] for e in bundle['entry'])",
        'md:## The study file says how to read the bundle\n\n`[patient.fhir]` extends the default code mapping with FHIR tokens `"system|code"`, keeps only the study drug\'s administrations and requests (theophylline, ATC R03DA04) and asks for the MedicationRequests as scenarios.',
        "study_path = example_study_path().with_name('example_fhir.toml')\nprint(study_path.read_text().split('[twins]')[0])",
        "study = load_study(study_path)\npatient = study.load_patient()\nprint('patient key shown in outputs:', patient.label)\npd.DataFrame(patient.rows(), columns=['time', 'time_unit', 'event', 'name', 'value', 'unit', 'duration'])",
        "md:Times are hours since the first dose (the bundle's zone, +01:00, is honoured). The MedicationRequests became these scenarios, simulated under every twin as the `[[scenarios]]` of `example.toml` would be:",
        "for sc in study.requested:\n    print(f'{sc.name:28s} doses at', [d.time for d in sc.doses])",
        "md:## Units\n\nUnits are UCUM codes as FHIR writes them. Amount and mass of a substance convert only with a stated molar mass: the bundled glucose specs state glucose's (180.156 g/mol), so a glucose level in mmol/L is read in the specs' mg/dL.",
        "for value, src, dst, mm in [(5.5, 'mmol/L', 'mg/dL', 180.156), (100, 'mg/dL', 'mmol/L', 180.156), (1.0, 'mg/dL', 'umol/L', 113.12),\n                            (12, 'ug/mL', 'mg/L', None), (120, 'mm[Hg]', 'kPa', None), (15, 'u[IU]/mL', 'uU/mL', None)]:\n    print(f'{value:g} {src:8s} = {value * conversion_factor(src, dst, mm):.5g} {dst}' + (f'  (M = {mm} g/mol)' if mm else ''))\ntry:\n    conversion_factor('mmol/L', 'mg/dL')\nexcept ValueError as exc:\n    print('without a molar mass:', exc)",
        "md:The bundled IVGTT bundle reports glucose by amount (LOINC 14749-6, mmol/L) and insulin in `u[IU]/mL`; the minimal model reads both in its own units:",
        "from twinbayes.dynamics.design import design_for\nivgtt = tb.Patient.from_fhir('bundled:ivgtt_pacini_bergman_1986.fhir.json')\ndesign = design_for(tb.load_spec('glucose_minimal'), ivgtt)\nprint('as reported:', ivgtt.observations('glucose', 'mmol/L', 'min')[1][:5], 'mmol/L')\nprint('in the spec: ', design.values['glucose'][:5].round(2), 'mg/dL (samples from 8 min)')",
        "md:## Identifiers stay in the bundle\n\nA bundle from a hospital carries the patient's name, record number, address and birth date. twinbayes reads only the Patient's `id`, and shows it as a keyed-hash pseudonym (`TWINBAYES_PSEUDONYM_KEY` or a per-user key file).",
        "named = json.loads(path.read_text())\nnamed['entry'][0]['resource'] |= {'identifier': [{'system': 'urn:hospital:mrn', 'value': 'MRN-778812'}],\n                                   'name': [{'text': 'Jane Q. Doe-Example'}], 'birthDate': '1961-04-12'}\np = read_bundle(named, FhirMapping.from_table({'medications': ['http://www.whocc.no/atc|R03DA04']}))\nprint(p.label, '| attributes kept:', sorted(p.data.attrs))",
        "md:## Run the study\n\nThe same patient, twins and regimens as the CSV example (`twinbayes run twinbayes/studies/example_fhir.toml`). With `TWINBAYES_NOTEBOOK_QUICK` set (the test suite), shorter chains.",
        "if os.environ.get('TWINBAYES_NOTEBOOK_QUICK'):\n    study = dataclasses.replace(study, sampler={**study.sampler, 'draws': 500, 'tune': 500})\nfrom twinbayes.pipeline import run_study\nout = Path(tempfile.mkdtemp()) / 'theophylline-fhir'\nresult = run_study(study, out, quiet=True, progress=False)\nprint(result.outcome.name)\nprint(result.comparison)",
        "print(result.disagreement)",
        "for name in ['scenario_fans', 'disagreement_over_time']:\n    figure = out / 'figures' / f'{name}.png'\n    if figure.exists():\n        plt.figure(figsize=(10, 6)); plt.imshow(plt.imread(figure)); plt.axis('off'); plt.show()",
    ],
    "notebooks/08_patient_data_from_fhir.ipynb",
)
