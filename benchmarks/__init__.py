"""Side-by-side benchmarks of Celeriac and real Celery: ``python -m benchmarks run [--quick]``."""
