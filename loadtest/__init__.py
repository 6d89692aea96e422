"""Load tester for the OpenAI-compatible vLLM endpoint served by this stack.

It drives ``/v1/completions`` (or ``/v1/chat/completions``) with streaming requests at a
series of concurrency steps, measures time to first token, inter-token and end-to-end
latency, samples the server's ``/metrics`` queue and KV-cache gauges, and recommends a
target for the HPA metric ``prometheus.googleapis.com|vllm:num_requests_waiting|gauge``.
Run it with ``python -m loadtest --url http://HOST:PORT`` (see ``--help``).
"""
