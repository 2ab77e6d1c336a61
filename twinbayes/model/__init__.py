"""The twin's model: a spec and a design turned into a PyMC model, predictions, simulated patients, checks."""
