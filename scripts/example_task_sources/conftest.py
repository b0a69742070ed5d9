"""Sources of the example tasks: repo snapshots, never tests of this project."""

collect_ignore_glob = ["*/*"]
