"""Applications built on models/ and data/: colorize, the web page, the phi* search and reports.

Imported by the entry scripts (colorize.py, app.py, optimal_phi.py, the evaluate_*.py scripts) and by nothing in
utils/, data/, models/ or training/.
"""
