"""What people look at: figures, the Pareto front, the HTML report. Data first, then drawing."""
