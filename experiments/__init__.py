"""Command-line entry points of jaxdiff (``python -m experiments.<name>``)."""
