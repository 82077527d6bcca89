"""``python -m eldercare``: the same command as ``eldercare`` (for a venv whose scripts are not on PATH)."""

from eldercare.cli import main

main()
