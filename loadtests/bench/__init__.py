"""The benchmarks' shared machinery, one module per concern.

    configs          paths, keys, the measured gateway's config and its variants, the mock's replies
    net              HTTP to 127.0.0.1 only: requests, probes, time to first chunk
    procs            child processes pinned to a core (mock upstream, baseline, gateways), free ports
    cpu              CPU and memory accounting from /proc
    load             load runs (wrk, the stream clients), interleaved rounds, py-spy profiles
    verdicts         the gateway core benchmark's targets and checks
    report           markdown tables, the terminal report, docs/benchmarks.md sections
    features         loadtests/feature_bench.py's sections (quotas, cache, metrics, translation)
    feature_report   their targets and docs sections

Entry points: loadtests/benchmark.py (`make bench`), feature_bench.py, chaos.py, instructions.py.
"""
