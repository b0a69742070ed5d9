"""pytest-oneshot: coding-agent evaluation tasks as pytest items."""
