"""The `rapport` command. It sits above the services it starts: the runtime they import knows
nothing of it."""
