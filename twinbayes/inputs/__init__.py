"""Inputs: the patient's data (CSV, FHIR), units, names, untrusted files, the bundled library, pseudonyms.

Below the model and everything after it: nothing here imports a later stage."""
