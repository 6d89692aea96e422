"""Load tester for the OpenAI-compatible vLLM endpoint served by this stack.

It drives ``/v1/completions`` (or ``/v1/chat/completions``) with streaming requests at a
series of concurrency steps, measures time to first token, inter-token and end-to-end
latency, samples the server's ``/metrics`` queue and KV-cache gauges, finds the knee (where
throughput stops growing, by the marginal-gain rule in :mod:`loadtest.knee`, or where latency
breaks an optional SLO) and recommends the stack's ``autoscalingMetric``/``autoscalingTarget``
(the queue or KV-cache usage at the knee), optionally writing them into ``Pulumi.<stack>.yaml``
(:mod:`loadtest.stackfile`). Run it with ``python -m loadtest --url http://HOST:PORT`` (see
``--help``).
"""
