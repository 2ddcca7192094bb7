"""dtmon's service side: CLI, daemon, alerts, topic selection and deduplication."""
