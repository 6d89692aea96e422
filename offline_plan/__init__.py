"""Preview the whole stack with no Pulumi CLI and no cloud account."""
