"""What bootstrap.py and the package share: standard library only, Python >= 3.9, loaded by path by bootstrap.py."""
