"""Golden messages captured from real Celery 5.7 (see capture.py), and the cases that made them."""
