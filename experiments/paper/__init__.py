"""The paper as code (python -m experiments.paper); see __main__.py."""
