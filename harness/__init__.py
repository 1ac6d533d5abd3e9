"""emref harness: discovers models/, draws ground truth, runs the generic checks.

Usable as a pytest plugin (``harness.plugin``, registered by the root
conftest.py) and as a CLI (``python -m harness``).
"""
