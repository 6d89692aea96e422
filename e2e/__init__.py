"""The real-cloud path: `make e2e` (up, serve, load, scale, no drift, destroy) and the offline plan
compared with a real `pulumi preview --json` (`python -m e2e.compare_preview`)."""
