"""Hyperparameter sweeps on keras-tuner: `cnnapp sweep text|image`.

    spec.py     a user's search space (JSON/TOML) as checked plain values
    plan.py     Zhang & Wallace's staged line search for the sentence CNN (pure functions)
    engine.py   keras-tuner: oracles, the tuner that runs cnnapp trials, the chief's gRPC server
    search.py   prepare a sweep, run its stages (alone, as chief or as worker), export the best
    report.py   sweep.json / sweep.md / sweep.csv and the plots, from the recorded trials

Nothing is imported here, so `cnnapp.sweep.spec` and `plan` stay free of TensorFlow.
"""
