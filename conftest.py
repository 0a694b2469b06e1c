"""Make the repository root importable (tests import ``tests.helpers``)."""
