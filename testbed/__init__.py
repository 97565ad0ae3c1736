"""The machinery that both tests/ and bench/ stand on: a booted systemd container, the wheelhouse a
site would build, and loops that see what users see. bench/ imports this, never tests/."""
