"""The only door to NNI 3.0: its config, its manager (started locked down), its store, the trial
protocol and entry point, the warm worker, remote machines. Nothing outside this package imports
`nni`, runs `nnictl` or opens NNI's store (tests/test_layers.py checks)."""
