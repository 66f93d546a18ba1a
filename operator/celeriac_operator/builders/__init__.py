"""Pure builders: a parsed custom resource (and what it resolved to) in, Kubernetes objects (dicts) out.

No I/O here: ``handlers`` read, call a builder, and hand the result to ``kube.Kube.apply``.
"""
