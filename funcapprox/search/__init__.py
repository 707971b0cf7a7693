"""A search: its spaces, the plan of a stage, running stages in turn, resuming, the experiments
in a work folder."""
