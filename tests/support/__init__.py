"""What the test modules share: test servers' places, SDK wiring, workflows, the CLI runner.

Fixtures live in tests/conftest.py; the helpers they and the tests use live here,
one module per job (see each module's docstring).
"""
