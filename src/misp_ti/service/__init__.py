"""Running as a service: one writer per state (lock), metrics and health."""
